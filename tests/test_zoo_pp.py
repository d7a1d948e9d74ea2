"""Options PaddleClas's configs pass to the PP-LCNet(V2), PP-HGNet(V2), RepVGG, ConvNeXt and RegNet
families, their stages, and the ConfigErrors for bad values (keys and PaddleClas-equal outputs
are covered by test_zoo.py and tools/dev/compare_with_paddleclas.py)."""
import numpy as np
import paddle
import pytest

from ppfreeze.arch import build_model
from ppfreeze.config.errors import ConfigError


def _x(h=32, w=32, batch=2, seed=0):
    return paddle.to_tensor(np.random.default_rng(seed).standard_normal((batch, 3, h, w)).astype("float32"))


def _output_shape(model, layer, x):
    shapes = []
    handle = layer.register_forward_post_hook(lambda _layer, _inp, out: shapes.append(out.shape))
    model.eval()
    with paddle.no_grad():
        model(x)
    handle.remove()
    return shapes[0]


def test_pplcnet_nested_stride_list_downsamples_height_only():
    """PULC text-line configs: ``[2, [2, 1], ...]`` = stride (2, 1) in blocks3..6 (height only)."""
    model = build_model({"name": "PPLCNet_x0_25", "class_num": 4,
                         "stride_list": [2, [2, 1], [2, 1], [2, 1], [2, 1]]})
    assert _output_shape(model, model.blocks6, _x(32, 96, batch=1)) == [1, 128, 1, 48]
    plain = build_model({"name": "PPLCNet_x0_25", "class_num": 4})
    assert _output_shape(plain, plain.blocks6, _x(32, 96, batch=1)) == [1, 128, 1, 3]


@pytest.mark.parametrize("stride_list,key", [
    ([2, [2, 1, 1], 2, 2, 2], "Arch.stride_list[1]"),
    ([2, 2, 0, 2, 2], "Arch.stride_list[2]"),
    ([2, 2, 2, 2], "Arch.stride_list"),
])
def test_pplcnet_bad_stride_list_names_the_entry(stride_list, key):
    with pytest.raises(ConfigError) as err:
        build_model({"name": "PPLCNet_x0_25", "stride_list": stride_list})
    assert err.value.key == key


def test_lr_mult_list_may_be_a_string_as_in_paddleclas():
    model = build_model({"name": "PPLCNet_x0_25", "class_num": 3, "lr_mult_list": "[0.1, 0.2, 0.3, 0.4, 0.5, 1.0]"})
    assert model.conv1.conv.weight.optimize_attr["learning_rate"] == pytest.approx(0.1)
    assert model.blocks6[0].pw_conv.bn.bias.optimize_attr["learning_rate"] == pytest.approx(1.0)
    with pytest.raises(ConfigError) as err:
        build_model({"name": "PPLCNet_x0_25", "lr_mult_list": "[0.1, 0.2]"})
    assert err.value.key == "Arch.lr_mult_list"


def test_pplcnet_tanh_variant_is_tanh_of_pplcnet_x2_5():
    paddle.seed(0)
    tanh_model = build_model({"name": "PPLCNet_x2_5_Tanh", "class_num": 3})
    plain = build_model({"name": "PPLCNet_x2_5", "class_num": 3})
    state = {k.replace("fc.origin_layer.", "fc."): v for k, v in tanh_model.state_dict().items()}
    plain.set_state_dict(state)
    tanh_model.eval(), plain.eval()
    with paddle.no_grad():
        np.testing.assert_allclose(tanh_model(_x()).numpy(), np.tanh(plain(_x()).numpy()), rtol=1e-5, atol=1e-6)


def test_pplcnet_base_net_takes_a_scale():
    assert build_model({"name": "PPLCNetBaseNet", "scale": 0.5, "class_num": 3}).conv1.conv.weight.shape[0] == 8
    assert build_model({"name": "PPLCNetBaseNet", "class_num": 3}).conv1.conv.weight.shape[0] == 16


def test_pplcnet_v2_shitu_keeps_stage4_resolution_and_has_a_linear_last_conv():
    base = build_model({"name": "PPLCNetV2_base", "class_num": 3})
    shitu = build_model({"name": "PPLCNetV2_base_ShiTu", "class_num": 3, "class_expand": 512})
    assert _output_shape(base, base.stage_layers[3], _x(64, 64)) == [2, 1024, 2, 2]
    assert _output_shape(shitu, shitu.stage_layers[3], _x(64, 64)) == [2, 1024, 4, 4]
    assert isinstance(shitu.act, paddle.nn.Identity) and shitu.last_conv.bias is not None
    assert base.last_conv.bias is None and shitu.num_features == 512


@pytest.mark.parametrize("name,stage_names", [
    ("PPLCNetV2_small", ["stem", "stage1", "stage2", "stage3", "stage4", "head"]),
    ("PPHGNet_tiny", ["stem", "stage1", "stage2", "stage3", "stage4", "head"]),
    ("PPHGNetV2_B0", ["stem", "stage1", "stage2", "stage3", "stage4", "head"]),
    ("RepVGG_A0", ["stem", "stage1", "stage2", "stage3", "stage4", "head"]),
    ("RegNetX_200MF", ["stem", "stage1", "stage2", "stage3", "stage4", "head"]),
])
def test_stage_names_and_units(name, stage_names):
    with paddle.LazyGuard():
        model = build_model({"name": name, "class_num": 3})
    assert list(model.stages) == stage_names
    assert "flatten" in model.stages["head"]  # BackboneStopLayer: flatten works on each family


def test_convnext_stages_follow_the_interleaved_forward_order():
    with paddle.LazyGuard():
        model = build_model({"name": "ConvNeXt_tiny", "class_num": 3})
    assert model.stages["stem"] == ["downsample_layers.0"]
    assert model.stages["stage1"] == ["stages.0"]
    assert model.stages["stage2"] == ["downsample_layers.1", "stages.1"]
    assert model.stages["head"] == ["norm", "head"]


def test_pphgnet_v2_lr_mult_list_reaches_stages_and_lab():
    model = build_model({"name": "PPHGNetV2_B0", "class_num": 3, "lr_mult_list": [0.0, 0.1, 0.2, 0.3, 0.4]})
    assert model.stem.stem1.conv.weight.optimize_attr["learning_rate"] == 0.0
    block = model.stage_layers[3].blocks[0]
    assert block.layers[0].conv1.conv.weight.optimize_attr["learning_rate"] == pytest.approx(0.4)
    assert block.layers[0].conv2.lab.scale.optimize_attr["learning_rate"] == pytest.approx(0.4 * 0.01)
    assert model.lab.scale.optimize_attr["learning_rate"] == pytest.approx(0.01)
    assert model.fc.weight.optimize_attr["learning_rate"] == 1.0
    with pytest.raises(ConfigError) as err:
        build_model({"name": "PPHGNetV2_B0", "lr_mult_list": [1.0, 1.0]})
    assert err.value.key == "Arch.lr_mult_list"


@pytest.mark.parametrize("name,width", [("PPHGNet_tiny", 768), ("PPHGNetV2_B0", 1024), ("PPLCNetV2_small", 768)])
def test_use_last_conv_false_feeds_the_pooled_features_to_fc(name, width):
    with paddle.LazyGuard():
        model = build_model({"name": name, "class_num": 3, "use_last_conv": False})
    assert model.num_features == width and model.fc.weight.shape == [width, 3]
    assert "last_conv" not in model.stages["head"]
    with pytest.raises(ConfigError) as err:
        build_model({"name": name, "use_last_conv": "no"})
    assert err.value.key == "Arch.use_last_conv"


def test_pphgnet_stage_config_is_checked():
    with pytest.raises(ConfigError) as err:
        build_model({"name": "PPHGNet_tiny", "stage_config": {"stage1": [96, 96, 224, 1]}})
    assert err.value.key == "Arch.stage_config.stage1"
    with pytest.raises(ConfigError) as err:
        build_model({"name": "PPHGNetV2_B0", "stem_channels": [3, 16, 32]})  # stage1 reads 16 channels
    assert err.value.key == "Arch.stage_config"
    small = build_model({"name": "PPHGNet_tiny", "class_num": 3, "layer_num": 1, "stem_channels": [8, 8, 16],
                         "stage_config": {"stage1": [16, 8, 16, 1, False], "stage2": [16, 8, 32, 2, True]}})
    assert list(small.stages) == ["stem", "stage1", "stage2", "head"]
    assert small(_x()).shape == [2, 3]


def test_convnext_options():
    with paddle.LazyGuard():
        no_scale = build_model({"name": "ConvNeXt_tiny", "class_num": 3, "layer_scale_init_value": 0})
    assert not any(k.endswith(".gamma") for k in no_scale.state_dict())
    paddle.seed(0)
    model = build_model({"name": "ConvNeXt_tiny", "class_num": 3, "depths": [1, 1, 1, 1], "dims": [8, 16, 24, 32],
                         "drop_path_rate": 0.5, "head_init_scale": 0.0})
    assert float(paddle.abs(model.head.weight).max()) == 0.0
    model.head.weight.set_value(paddle.ones_like(model.head.weight))
    model.train()
    outs = [model(_x()).numpy() for _ in range(3)]
    assert not all(np.array_equal(outs[0], o) for o in outs[1:])  # stochastic depth drops branches
    model.eval()
    assert np.array_equal(model(_x()).numpy(), model(_x()).numpy())
    with pytest.raises(ConfigError) as err:
        build_model({"name": "ConvNeXt_tiny", "drop_path_rate": 1.5})
    assert err.value.key == "Arch.drop_path_rate"


def test_regnet_stages_cover_every_block():
    with paddle.LazyGuard():
        model = build_model({"name": "RegNetX_200MF", "class_num": 3})
    trunk = [u for s in ("stage1", "stage2", "stage3", "stage4") for u in model.stages[s]]
    assert len(trunk) == 13 and trunk[0] == "s1_b1" and model.stages["stage2"][0] == "s2_b1"
    with pytest.raises(ConfigError) as err:
        build_model({"name": "RegNetX_200MF", "w_m": 1.0})
    assert err.value.key == "Arch.w_m"


def test_repvgg_groups_must_divide_the_channels():
    with pytest.raises(ConfigError) as err:
        build_model({"name": "RepVGG_A0", "override_groups_map": {2: 5}})
    assert err.value.key == "Arch.override_groups_map.2"


def test_backbone_stop_layer_flatten_on_a_new_family():
    model = build_model({"name": "RecModel", "Backbone": {"name": "RepVGG_A0"},
                         "BackboneStopLayer": {"name": "flatten"},
                         "Neck": {"name": "FC", "embedding_size": 1280, "class_num": 16}})
    model.eval()
    assert model(_x())["features"].shape == [2, 16]


def test_backbone_stop_layer_inside_a_stages_sublayer_keeps_the_stage_mapping():
    """PP-HGNet names a sublayer ``stages`` (PaddleClas keys) next to the contract's ``stages``
    mapping: cutting inside it, or before it, must replace the sublayers and keep the mapping."""
    model = build_model({"name": "RecModel", "Backbone": {"name": "PPHGNet_tiny"},
                         "BackboneStopLayer": {"name": "stages.2"}})
    assert isinstance(model.backbone.stage_layers[3], paddle.nn.Identity)
    assert isinstance(model.backbone.fc, paddle.nn.Identity)
    model.eval()
    assert model(_x(64, 64))["features"].shape == [2, 512, 4, 4]
    early = build_model({"name": "RecModel", "Backbone": {"name": "PPHGNet_tiny"},
                         "BackboneStopLayer": {"name": "pool"}})
    assert isinstance(early.backbone.stage_layers, paddle.nn.Identity)
    assert list(early.backbone.stages)[:2] == ["stem", "stage1"]
