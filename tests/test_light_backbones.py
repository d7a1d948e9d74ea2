"""Light backbones (MobileNetV1-V4, ShuffleNetV2, GhostNet, ESNet): the PaddleClas config keys they
accept, the ones they refuse, and retrieval cuts at ``flatten``.  Keys, outputs and freezing are
covered for every model by tests/test_zoo.py."""
import numpy as np
import paddle
import pytest

from ppfreeze.arch import build_model
from ppfreeze.config.errors import ConfigError


def _lazy(cfg):
    with paddle.LazyGuard():
        return build_model(cfg)


def _x(size=32):
    return paddle.to_tensor(np.random.default_rng(0).standard_normal((2, 3, size, size)).astype("float32"))


def test_mobilenet_v3_dropout_prob_null_removes_the_dropout_layer():
    # PaddleClas's distillation config passes dropout_prob: null
    model = _lazy({"name": "MobileNetV3_small_x1_0", "class_num": 10, "dropout_prob": None})
    assert model.dropout is None and "dropout" not in model.stages["head"]
    assert "dropout" in _lazy({"name": "MobileNetV3_small_x1_0", "class_num": 10}).stages["head"]


@pytest.mark.parametrize("cfg, key", [
    ({"name": "MobileNetV3_small_x0_35", "dropout_prob": 1.5}, "Arch.dropout_prob"),
    ({"name": "MobileNetV3_large_x1_0", "class_expand": 0}, "Arch.class_expand"),
    ({"name": "ShuffleNetV2_x1_0", "act": "tanh"}, "Arch.act"),
    ({"name": "ShuffleNetV2_swish", "act": "relu"}, "Arch.act"),
    ({"name": "MobileNetV2", "data_format": "NHWC"}, "Arch.data_format"),
    ({"name": "MobileNetV4_hybrid_medium", "use_fused_attn": True}, "Arch.use_fused_attn"),
    ({"name": "MobileNetV4_conv_small", "drop_path_rate": 1.0}, "Arch.drop_path_rate"),
    ({"name": "MobileNetV1", "return_patterns": ["blocks[99]"]}, "Arch.return_patterns.0"),
    ({"name": "GhostNet_x1_0", "scale": 0.5}, "Arch.scale"),
])
def test_bad_arguments_are_config_errors_naming_the_key(cfg, key):
    with pytest.raises(ConfigError) as err:
        _lazy(cfg)
    assert err.value.key == key


def test_mobilenet_v4_accepts_its_paddleclas_config_keys_and_does_not_apply_drop_rate(caplog):
    # the keys ppcls/configs/ImageNet/MobileNetV4/*.yaml pass
    cfg = {"name": "MobileNetV4_conv_small", "class_num": 5, "drop_rate": 0.25, "drop_path_rate": 0.03,
           "use_fused_attn": False}
    with caplog.at_level("WARNING", logger="ppfreeze"):
        model = build_model(cfg)
    assert "drop_rate=0.25 is not applied" in caplog.text
    # stochastic depth rises over the blocks: none on block 0, some on the last
    assert not hasattr(model.blocks[0], "drop_path") and model.blocks[16].drop_path.drop_prob > 0
    model.eval()
    plain = build_model({"name": "MobileNetV4_conv_small", "class_num": 5})
    plain.set_state_dict(model.state_dict())
    plain.eval()
    with paddle.no_grad():
        np.testing.assert_array_equal(model(_x()).numpy(), plain(_x()).numpy())


def test_shufflenet_v2_act_swish_gives_the_swish_model():
    paddle.seed(0)
    swish = build_model({"name": "ShuffleNetV2_swish", "class_num": 3})
    x1_0_swish = build_model({"name": "ShuffleNetV2_x1_0", "class_num": 3, "act": "swish"})
    x1_0_swish.set_state_dict(swish.state_dict())
    swish.eval(), x1_0_swish.eval()
    with paddle.no_grad():
        np.testing.assert_array_equal(swish(_x()).numpy(), x1_0_swish(_x()).numpy())


@pytest.mark.parametrize("backbone, width", [
    ("MobileNetV1_x0_25", 256), ("MobileNetV2_x0_25", 1280), ("MobileNetV3_small_x0_35", 1280),
    ("ShuffleNetV2_x0_25", 512), ("GhostNet_x0_5", 1280), ("ESNet_x0_25", 1280), ("MobileNetV4_conv_small", 1280),
])
def test_backbone_stop_layer_flatten_gives_the_features_the_classifier_reads(backbone, width):
    model = build_model({"name": "RecModel", "Backbone": {"name": backbone, "class_num": 10},
                         "BackboneStopLayer": {"name": "flatten"}})
    model.eval()
    with paddle.no_grad():
        features = model(_x())["features"]
    assert features.shape == [2, width] == [2, model.num_features]
