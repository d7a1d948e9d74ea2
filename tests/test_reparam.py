"""Re-parameterisable backbones: ``export_model()`` folds the training branches into single convs
(RepVGG blocks, PP-LCNetV2 depthwise branches) with the same eval-mode outputs, fewer parameters,
and leaves the training model untouched."""
import numpy as np
import paddle
import pytest

from ppfreeze.arch import build_model, contract_violations


def _randomise_batch_norms(model, seed=0):
    """Non-trivial BN statistics and affine parameters, so a wrong fold cannot pass by accident."""
    rng = np.random.default_rng(seed)
    for layer in model.sublayers():
        if isinstance(layer, paddle.nn.BatchNorm2D):
            n = layer._mean.shape[0]
            layer._mean.set_value(rng.normal(0, 0.5, n).astype("float32"))
            layer._variance.set_value(rng.uniform(0.5, 2.0, n).astype("float32"))
            layer.weight.set_value(rng.uniform(0.5, 1.5, n).astype("float32"))
            layer.bias.set_value(rng.normal(0, 0.2, n).astype("float32"))


def _num_params(model):
    return sum(int(np.prod(p.shape)) for p in model.parameters())


CASES = [
    ("RepVGG_A0", {}),
    # grouped 3x3/1x1 branches (the g2/g4 variants' layout) and SE (D2se), kept tiny
    ("RepVGG_B1g4", {"num_blocks": [2, 2, 2, 1], "width_multiplier": [0.5, 0.5, 0.5, 0.5]}),
    ("RepVGG_D2se", {"num_blocks": [2, 2, 2, 1], "width_multiplier": [0.5, 0.5, 0.5, 0.5]}),
    ("PPLCNetV2_small", {}),
    ("PPLCNetV2_base_ShiTu", {"class_expand": 64}),
]


@pytest.mark.parametrize("name,kwargs", CASES, ids=[c[0] for c in CASES])
def test_export_model_is_fused_and_keeps_eval_outputs(name, kwargs):
    paddle.seed(0)
    model = build_model({"name": name, "class_num": 5, **kwargs})
    _randomise_batch_norms(model)
    model.eval()
    keys_before = list(model.state_dict())
    x = paddle.to_tensor(np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype("float32"))
    with paddle.no_grad():
        expected = model(x).numpy()
        deploy = model.export_model()
        got = deploy(x).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    assert _num_params(deploy) < _num_params(model)
    assert contract_violations(deploy) == []
    deploy_keys = list(deploy.state_dict())
    if name.startswith("RepVGG"):
        assert not any(".rbr_dense." in k or ".rbr_1x1." in k or ".rbr_identity." in k for k in deploy_keys)
        assert "stage1.0.rbr_reparam.weight" in deploy_keys and "stage1.0.rbr_reparam.bias" in deploy_keys
    else:
        assert not any(".dw_conv_list." in k for k in deploy_keys)
        assert "stages.2.0.dw_conv.weight" in deploy_keys
    # the training model keeps its branches and PaddleClas's keys
    assert list(model.state_dict()) == keys_before
    with paddle.no_grad():
        np.testing.assert_array_equal(model(x).numpy(), expected)


def test_pplcnet_v2_fused_slot_is_not_trained():
    """``dw_conv`` of a multi-branch block only holds the fused kernel at export: no gradient,
    no optimizer state (PaddleClas keeps it in the state dict, so the key stays)."""
    model = build_model({"name": "PPLCNetV2_small", "class_num": 3})
    block = model.stage_layers[2][0]
    assert block.dw_conv.weight.stop_gradient and block.dw_conv.bias.stop_gradient
    assert not block.dw_conv_list[0].conv.weight.stop_gradient
    model.train()
    (model(paddle.randn([2, 3, 32, 32])) ** 2).mean().backward()
    assert block.dw_conv.weight.grad is None and block.dw_conv_list[0].conv.weight.grad is not None


def test_a_recmodel_exports_its_backbone_fused():
    paddle.seed(0)
    model = build_model({"name": "RecModel", "Backbone": {"name": "RepVGG_A0"},
                         "BackboneStopLayer": {"name": "flatten"},
                         "Neck": {"name": "FC", "embedding_size": 1280, "class_num": 16}})
    _randomise_batch_norms(model)
    model.eval()
    deploy = model.export_model()
    assert deploy is not model and _num_params(deploy) < _num_params(model)
    x = paddle.to_tensor(np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype("float32"))
    with paddle.no_grad():
        a, b = model(x)["features"].numpy(), deploy(x)["features"].numpy()
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * np.abs(a).max())
