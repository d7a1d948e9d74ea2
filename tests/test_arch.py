"""Backbones (PaddleClas key layout, stages), build_model, load_pretrained, stop_after."""
import numpy as np
import paddle
import pytest

from ppfreeze.errors import DataIntegrityError

from ppfreeze.arch import MODELS, build_model
from ppfreeze.arch.pretrained import LoadReport, load_pretrained, state_dict_from_file
from ppfreeze.arch.utils import stop_after
from ppfreeze.config.errors import ConfigError

def _input(batch=2, size=32, seed=0):
    rng = np.random.default_rng(seed)
    return paddle.to_tensor(rng.standard_normal((batch, 3, size, size)).astype("float32"))


def _all_names(model):
    """Every parameter name (Paddle keeps BN statistics as non-trainable parameters) and buffer."""
    return set(model.state_dict()) | {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}


@pytest.mark.parametrize("name, expected", [
    ("ResNet50", {"stem.0.conv.weight": [64, 3, 7, 7], "stem.0.bn._mean": [64], "stem.0.bn._variance": [64],
                  "blocks.0.conv0.conv.weight": [64, 64, 1, 1], "blocks.0.short.conv.weight": [256, 64, 1, 1],
                  "blocks.3.short.conv.weight": [512, 256, 1, 1], "blocks.15.conv2.bn.weight": [2048],
                  "fc.weight": [2048, 10], "fc.bias": [10]}),
    ("ResNet50_vd", {"stem.0.conv.weight": [32, 3, 3, 3], "stem.1.conv.weight": [32, 32, 3, 3],
                     "stem.2.conv.weight": [64, 32, 3, 3], "blocks.7.short.conv.weight": [1024, 512, 1, 1],
                     "fc.weight": [2048, 10]}),
    ("ResNet18", {"stem.0.conv.weight": [64, 3, 7, 7], "blocks.0.short.conv.weight": [64, 64, 1, 1],
                  "blocks.2.conv0.conv.weight": [128, 64, 3, 3], "blocks.7.conv1.conv.weight": [512, 512, 3, 3],
                  "fc.weight": [512, 10]}),
    ("PPLCNet_x1_0", {"conv1.conv.weight": [16, 3, 3, 3], "conv1.bn._mean": [16],
                      "blocks2.0.dw_conv.conv.weight": [16, 1, 3, 3], "blocks2.0.pw_conv.conv.weight": [32, 16, 1, 1],
                      "blocks6.0.se.conv1.weight": [64, 256, 1, 1], "blocks6.1.se.conv2.bias": [512],
                      "last_conv.weight": [1280, 512, 1, 1], "fc.weight": [1280, 10]}),
])
def test_paddleclas_keys_and_shapes(name, expected):
    state = build_model({"name": name, "class_num": 10}).state_dict()
    for key, shape in expected.items():
        assert key in state, key
        assert list(state[key].shape) == shape, key


def test_resnet_layout_matches_paddleclas():
    state = build_model({"name": "ResNet50"}).state_dict()
    assert max(int(k.split(".")[1]) for k in state if k.startswith("blocks.")) == 15
    assert not any(".short." in k for k in state if k.startswith("blocks.1."))  # identity shortcut there
    vd = build_model({"name": "ResNet50_vd"})
    assert not vd.blocks[0].short.is_vd_mode and vd.blocks[3].short.is_vd_mode
    model = build_model({"name": "ResNet50"})
    assert model.stages["stage1"] == ["blocks.0", "blocks.1", "blocks.2"]
    assert model.stages["stage2"] == ["blocks.3", "blocks.4", "blocks.5", "blocks.6"]
    assert model.stages["stage3"][0] == "blocks.7" and model.stages["stage3"][-1] == "blocks.12"
    assert model.stages["stage4"] == ["blocks.13", "blocks.14", "blocks.15"]
    assert list(model.stages) == ["stem", "stage1", "stage2", "stage3", "stage4", "head"]
    assert model.stages["head"] == ["avg_pool", "flatten", "fc"]
    assert list(build_model({"name": "PPLCNet_x0_25"}).stages) == \
        ["stem", "blocks2", "blocks3", "blocks4", "blocks5", "blocks6", "head"]


def test_lr_mult_list_sets_param_learning_rate():
    model = build_model({"name": "ResNet18", "lr_mult_list": [0.0, 0.1, 0.2, 0.3, 0.4], "class_num": 3})
    assert model.stem[0].conv.weight.optimize_attr["learning_rate"] == 0.0
    assert model.blocks[0].conv0.bn.weight.optimize_attr["learning_rate"] == pytest.approx(0.1)
    assert model.blocks[7].conv1.conv.weight.optimize_attr["learning_rate"] == pytest.approx(0.4)
    assert model.fc.weight.optimize_attr["learning_rate"] == 1.0
    with pytest.raises(ConfigError) as err:
        build_model({"name": "ResNet18", "lr_mult_list": [1.0, 1.0]})
    assert err.value.key == "Arch.lr_mult_list"


def test_class_num_precedence_and_pplcnet_options():
    assert build_model({"name": "ResNet18", "class_num": 4}, class_num=9).fc.weight.shape == [512, 4]
    assert build_model({"name": "ResNet18"}, class_num=9).fc.weight.shape == [512, 9]
    no_last = build_model({"name": "PPLCNet", "scale": 0.5, "use_last_conv": False, "class_num": 3})
    assert no_last.fc.weight.shape == [256, 3] and "last_conv" not in no_last.stages["head"]
    with pytest.raises(ConfigError) as err:
        build_model({"name": "PPLCNet_x0_25", "scale": 1.0})
    assert err.value.key == "Arch.scale"
    with pytest.raises(ConfigError):
        build_model({"name": "ResNet50", "class_num": 0})


def test_unknown_model_and_argument_give_did_you_mean():
    with pytest.raises(ConfigError) as err:
        build_model({"name": "ResNet5O"})
    assert err.value.key == "Arch.name" and "ResNet50" in str(err.value) and "Did you mean" in str(err.value)
    with pytest.raises(ConfigError) as err:
        build_model({"name": "ResNet18", "clas_num": 3})
    assert err.value.key == "Arch.clas_num" and "class_num" in str(err.value)
    with pytest.raises(ConfigError) as err:
        build_model({"name": "ResNet18", "data_format": "NWHC"}, key="Arch.Backbone")
    assert err.value.key == "Arch.Backbone.data_format"


def test_load_pretrained_round_trip_skips_mismatched_head(tmp_path):
    paddle.seed(1)
    source = build_model({"name": "ResNet18", "class_num": 10})
    # non-default BN statistics, so the test sees buffers being loaded
    source.stem[0].bn._mean.set_value(paddle.full([64], 0.5))
    paddle.save(source.state_dict(), str(tmp_path / "r18.pdparams"))

    paddle.seed(2)
    target = build_model({"name": "ResNet18", "class_num": 5})
    report = load_pretrained(target, str(tmp_path / "r18"))  # PaddleClas omits the suffix
    assert isinstance(report, LoadReport)
    assert sorted(n for n, _, _ in report.mismatched) == ["fc.bias", "fc.weight"]
    assert ("fc.weight", (512, 10), (512, 5)) in report.mismatched
    assert report.missing == [] and report.unexpected == []
    assert len(report.loaded) == len(target.state_dict()) - 2
    assert "stem.0.bn._mean" in report.loaded
    assert "fc.weight" in report.summary() and "loaded" in report.summary()

    for model in (source, target):
        model.eval()
        stop_after(model, "flatten")
    x = _input(seed=3)
    np.testing.assert_array_equal(source(x).numpy(), target(x).numpy())


def test_load_pretrained_casts_dtype_and_reports_missing(tmp_path):
    source = build_model({"name": "PPLCNet_x0_25", "class_num": 3}).state_dict()
    half = {k: v.numpy().astype("float16") for k, v in source.items() if not k.startswith("blocks6")}
    half["extra.weight"] = np.zeros(2, dtype="float32")
    paddle.save(half, str(tmp_path / "half.pdparams"))
    target = build_model({"name": "PPLCNet_x0_25", "class_num": 3})
    report = load_pretrained(target, str(tmp_path / "half.pdparams"))
    assert report.unexpected == ["extra.weight"]
    assert report.missing and all(k.startswith("blocks6") for k in report.missing)
    assert target.conv1.conv.weight.dtype == paddle.float32
    np.testing.assert_allclose(target.conv1.conv.weight.numpy(), half["conv1.conv.weight"].astype("float32"))
    assert set(state_dict_from_file(str(tmp_path / "half"))) == set(half)


def test_load_pretrained_errors(tmp_path):
    model = build_model({"name": "ResNet18", "class_num": 2})
    with pytest.raises(ConfigError) as err:
        load_pretrained(model, str(tmp_path / "nowhere" / "ResNet18_pretrained"))
    assert err.value.key == "Global.pretrained_model" and "ResNet18_pretrained.pdparams" in str(err.value)
    paddle.save({"conv1_weights": np.zeros((64, 3, 7, 7), dtype="float32")}, str(tmp_path / "legacy.pdparams"))
    with pytest.raises(ConfigError) as err:
        load_pretrained(model, str(tmp_path / "legacy"))
    assert "conv1_weights" in str(err.value)
    (tmp_path / "junk.pdparams").write_text("not weights")
    with pytest.raises(DataIntegrityError, match="junk.pdparams: is not a weights file"):  # exit 3, not 2
        load_pretrained(model, str(tmp_path / "junk.pdparams"))


def test_arch_pretrained_key(tmp_path):
    paddle.seed(3)
    source = build_model({"name": "ResNet18", "class_num": 2})
    paddle.save(source.state_dict(), str(tmp_path / "w.pdparams"))
    loaded = build_model({"name": "ResNet18", "class_num": 2, "pretrained": str(tmp_path / "w")})
    np.testing.assert_array_equal(loaded.fc.weight.numpy(), source.fc.weight.numpy())
    assert build_model({"name": "ResNet18", "pretrained": False, "use_ssld": True}) is not None
    with pytest.raises(ConfigError) as err:
        build_model({"name": "ResNet18", "pretrained": True})
    assert err.value.key == "Arch.pretrained" and "local path" in str(err.value)
    with pytest.raises(ConfigError) as err:
        build_model({"name": "ResNet18", "pretrained": str(tmp_path / "absent")}, key="Arch.Backbone")
    assert err.value.key == "Arch.Backbone.pretrained"


def test_stop_after_flatten_gives_pooled_feature():
    model = build_model({"name": "ResNet18", "class_num": 10})
    model.eval()
    x = _input()
    pooled = model.flatten(model.avg_pool(model.blocks(model.max_pool(model.stem(x)))))
    stop_after(model, "flatten")
    out = model(x)
    assert out.shape == [2, 512]
    np.testing.assert_allclose(out.numpy(), pooled.numpy(), rtol=1e-6)
    assert isinstance(model.fc, paddle.nn.Identity) and not isinstance(model.flatten, paddle.nn.Identity)


def test_stop_after_nested_name_and_unknown_name(caplog):
    model = build_model({"name": "ResNet18", "class_num": 10})
    model.eval()
    stop_after(model, "blocks.5")  # end of stage3: 256 channels at stride 16
    assert model(_input()).shape == [2, 256, 2, 2]
    assert isinstance(model.blocks[6], paddle.nn.Identity) and isinstance(model.avg_pool, paddle.nn.Identity)
    assert not isinstance(model.blocks[5], paddle.nn.Identity)
    # PaddleClas's pattern syntax names the same layer
    other = build_model({"name": "ResNet18", "class_num": 10})
    assert stop_after(other, "blocks[5]") and isinstance(other.blocks[6], paddle.nn.Identity)
    # an unknown name leaves the model whole, loudly (PaddleClas's behaviour; its configs rely on it)
    whole = build_model({"name": "ResNet18", "class_num": 10})
    assert not stop_after(whole, "flaten")
    assert not isinstance(whole.fc, paddle.nn.Identity)
    assert "Arch.BackboneStopLayer.name: model ResNet18 has no sublayer 'flaten'" in caplog.text
    assert "Did you mean: flatten" in caplog.text


def test_registry_lists_requested_models():
    for name in ["ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet18_vd", "ResNet34_vd", "ResNet50_vd",
                 "PPLCNet_x0_25", "PPLCNet_x0_5", "PPLCNet_x1_0"]:
        assert name in MODELS
