"""ResNet options PaddleClas configs pass (return_patterns, [h, w] strides, NHWC, DiverseBranchBlock),
the ResNet50 variants and WideResNet's class-count arguments.  Small models at 32 px only; the
numeric agreement with PaddleClas itself is checked by tools/dev/compare_with_paddleclas.py."""
import numpy as np
import paddle
import pytest

from ppfreeze.arch import build_model, contract_violations
from ppfreeze.config.errors import ConfigError


def _x(size=32, batch=2, seed=0):
    return paddle.to_tensor(np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype("float32"))


def _eval(model, x):
    model.eval()
    with paddle.no_grad():
        return model(x)


def test_return_patterns_and_return_stages_add_tapped_outputs():
    model = build_model({"name": "ResNet18", "class_num": 5, "return_patterns": ["blocks[1]", "avg_pool"]})
    out = _eval(model, _x())
    assert list(out) == ["logits", "blocks[1]", "avg_pool"]
    assert out["blocks[1]"].shape == [2, 64, 8, 8] and out["avg_pool"].shape == [2, 512, 1, 1]
    stages = build_model({"name": "ResNet18", "class_num": 5, "return_stages": [0, 3]})
    assert list(_eval(stages, _x())) == ["logits", "blocks[1]", "blocks[7]"]
    with pytest.raises(ConfigError, match="no sublayer 'blocks\\[99\\]'"):
        build_model({"name": "ResNet18", "return_patterns": ["blocks[99]"]})
    with pytest.raises(ConfigError, match="return_stages"):
        build_model({"name": "ResNet18", "return_stages": [4]})


def test_stride_pairs_keep_the_width():
    model = build_model({"name": "ResNet18_vd", "class_num": 5, "return_stages": True,
                         "stride_list": [2, [2, 1], [2, 1], [2, 1], [2, 1]]})
    out = _eval(model, _x())
    assert out["blocks[7]"].shape == [2, 512, 1, 16]  # height 32 / 32, width 32 / 2
    with pytest.raises(ConfigError, match="stride_list\\[1\\]"):
        build_model({"name": "ResNet18", "stride_list": [2, [2, 1, 1], 2, 2, 2]})


def test_nhwc_layout_gives_the_nchw_outputs():
    paddle.seed(0)
    nchw = build_model({"name": "ResNet18_vd", "class_num": 5})
    nhwc = build_model({"name": "ResNet18_vd", "class_num": 5, "data_format": "NHWC"})
    nhwc.set_state_dict(nchw.state_dict())
    np.testing.assert_allclose(_eval(nhwc, _x()).numpy(), _eval(nchw, _x()).numpy(), rtol=1e-4, atol=1e-4)


def test_diverse_branch_blocks_fuse_into_one_conv_for_export():
    model = build_model({"name": "ResNet18", "class_num": 5, "layer_type": "DiverseBranchBlock",
                         "use_first_short_conv": False})
    model.train()
    model(_x())  # move the BN statistics away from their initial values
    deploy = model.export_model()
    assert deploy is not model and contract_violations(model) == []
    assert "blocks.0.conv0.dbb_reparam.weight" in deploy.state_dict()
    assert "blocks.0.conv0.dbb_origin.conv.weight" in model.state_dict()
    expected = _eval(model, _x(seed=1)).numpy()
    np.testing.assert_allclose(_eval(deploy, _x(seed=1)).numpy(), expected, rtol=1e-4,
                               atol=1e-4 * np.abs(expected).max())


def test_first_short_conv_off_needs_basic_blocks():
    with pytest.raises(ConfigError, match="use_first_short_conv"):
        build_model({"name": "ResNet50", "use_first_short_conv": False})


def test_last_stage_stride1_doubles_the_last_feature_map():
    with paddle.LazyGuard():
        plain = build_model({"name": "ResNet50"})
        variant = build_model({"name": "ResNet50_last_stage_stride1"})
    assert list(plain.state_dict()) == list(variant.state_dict())
    assert variant.blocks[13].conv1.conv._stride == [1, 1] and plain.blocks[13].conv1.conv._stride == [2, 2]


def test_metabin_takes_resnet50_weights_and_sets_the_bias_lr():
    with paddle.LazyGuard():
        model = build_model({"name": "ResNet50_metabin", "class_num": 5, "bias_lr_factor": 2.0})
    assert model.fc.bias.optimize_attr["learning_rate"] == 2.0
    assert model.stem[0].bn.batch_norm.bias.optimize_attr["learning_rate"] == 2.0
    assert model.fc.weight.optimize_attr["learning_rate"] == 1.0
    plain = {"stem.0.bn.weight": 1, "stem.0.conv.weight": 2, "stem.0.bn.gate.gate": 3}
    assert model.adapt_state_dict(plain) == {"stem.0.bn.batch_norm.weight": 1, "stem.0.conv.weight": 2,
                                             "stem.0.bn.gate.gate": 3}


def test_wideresnet_takes_num_classes_or_class_num():
    with paddle.LazyGuard():
        assert build_model({"name": "WideResNet", "num_classes": 10}).class_num == 10
        assert build_model({"name": "WideResNet"}, class_num=6).class_num == 6
    with pytest.raises(ConfigError, match="disagrees"):
        build_model({"name": "WideResNet", "num_classes": 10, "class_num": 100})
    with pytest.raises(ConfigError, match="6n \\+ 4"):
        build_model({"name": "WideResNet", "num_classes": 10, "depth": 27})


def test_metabin_loads_a_plain_resnet50_file_through_load_pretrained(tmp_path):
    from ppfreeze.arch.pretrained import load_pretrained
    paddle.seed(0)
    plain = build_model({"name": "ResNet50", "class_num": 5})
    path = str(tmp_path / "ResNet50_pretrained.pdparams")
    paddle.save(plain.state_dict(), path)
    metabin = build_model({"name": "ResNet50_metabin", "class_num": 5})
    report = load_pretrained(metabin, path)
    # every BN of the file lands in its MetaBIN's batch_norm; only MetaBIN's own instance norm and
    # gate (not in a ResNet50 file) stay as built
    assert report.missing and all(".instance_norm." in k or ".gate." in k for k in report.missing), report.missing[:5]
    np.testing.assert_array_equal(metabin.stem[0].bn.batch_norm.weight.numpy(), plain.stem[0].bn.weight.numpy())
