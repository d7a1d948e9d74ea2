"""``Arch.use_ml_decoder`` + the ``MLDecoder`` section: PaddleClas's ML-Decoder head.

Keys, shapes, outputs and Paddle's generated parameter names were compared with PaddleClas's
``add_ml_decoder_head`` for ResNet18 and PPLCNet_x0_25 (depth 1 and 2): identical, outputs
bit-equal with PaddleClas's weights loaded. The expected key layout below is PaddleClas's.
"""
import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
import yaml

from conftest import tiny_config
from ppfreeze.arch import build_model, contract_violations
from ppfreeze.config import ConfigError, load_config
from ppfreeze.engine import Engine
from test_deploy_failures import load_deploy

TINY = {"query_num": 4, "in_channels": 512, "embed_dim": 32, "num_heads": 4, "mlp_hidden_dim": 48}
DECODER_KEYS = (["input_proj.weight 32,512,1,1", "input_proj.bias 32", "query_pos_embed.weight 4,32"]
                + [f"decoder.layers.0.cross_attn.{p}_proj.{t} {'32,32' if t == 'weight' else '32'}"
                   for p in ("q", "k", "v", "out") for t in ("weight", "bias")]
                + ["decoder.layers.0.linear1.weight 32,48", "decoder.layers.0.linear1.bias 48",
                   "decoder.layers.0.linear2.weight 48,32", "decoder.layers.0.linear2.bias 32"]
                + [f"decoder.layers.0.norm{i}.{t} 32" for i in (1, 2, 3) for t in ("weight", "bias")]
                + ["group_conv.weight 12,32,1,1", "group_conv.bias 12"])


def _resnet18(**decoder):
    return build_model({"name": "ResNet18", "class_num": 10, "use_ml_decoder": True}, ml_decoder={**TINY, **decoder})


def test_paddleclas_key_layout_replaces_the_classifier():
    model = _resnet18()
    keys = [f"{k} {','.join(str(d) for d in v.shape)}" for k, v in model.state_dict().items()]
    assert [k[3:] for k in keys if k.startswith("fc.")] == DECODER_KEYS   # no self_attn: removed, as in PaddleClas
    assert type(model.avg_pool).__name__ == type(model.flatten).__name__ == "Identity"
    assert model.fc.query_pos_embed.weight.stop_gradient          # freeze_query_embed (default True)
    assert contract_violations(model) == []


def test_forward_is_the_ml_decoder_math():
    paddle.seed(1)
    model = _resnet18(dropout=0.0)
    model.eval()
    x = paddle.to_tensor(np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype("float32"))
    with paddle.no_grad():
        out = model(x)
        # by hand: the trunk's 2x2 map -> 1x1 conv + ReLU -> 4 positions; queries attend to them
        head = model.fc
        trunk = model.blocks(model.max_pool(model.stem(x)))
        memory = F.relu(head.input_proj(trunk)).flatten(2).transpose([0, 2, 1])
        layer = head.decoder.layers[0]
        q = head.query_pos_embed.weight.unsqueeze(0).tile([2, 1, 1])
        q = layer.norm1(q + q)                        # the removed self-attention passes q on, plus the residual
        q = layer.norm2(q + layer.cross_attn(q, memory, memory))
        q = layer.norm3(q + layer.linear2(F.relu(layer.linear1(q))))
        # query i's embedding -> logits 3i..3i+2 (group conv); the first 10 of 12 are the classes
        w, b = head.group_conv.weight.numpy()[:, :, 0, 0], head.group_conv.bias.numpy()
        qn = q.numpy()
        expected = np.stack([np.concatenate([w[3 * i:3 * i + 3] @ qn[n, i] + b[3 * i:3 * i + 3] for i in range(4)])
                             for n in range(2)])[:, :10]
    assert out.shape == [2, 10]
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-5)


def test_mistakes_in_the_section_are_config_errors(caplog):
    with pytest.raises(ConfigError, match=r"MLDecoder.in_channels: is 2048, but ResNet18 gives 512-channel features.*"
                                          r"set MLDecoder.in_channels: 512"):
        build_model({"name": "ResNet18", "class_num": 10, "use_ml_decoder": True}, ml_decoder={"query_num": 4})
    with pytest.raises(ConfigError, match=r"MLDecoder.query_nums: .MLDecoder. has no argument .query_nums.*Did you mean: query_num"):
        _resnet18(query_nums=3)
    with pytest.raises(ConfigError, match=r"MLDecoder.remove_layers: ResNet18 has no sublayer 'gap'"):
        _resnet18(remove_layers=["gap"])
    with pytest.raises(ConfigError, match=r"MLDecoder.num_heads: embed_dim 30 is not divisible by num_heads 4"):
        _resnet18(embed_dim=30)
    build_model({"name": "ResNet18", "class_num": 10}, ml_decoder=TINY)
    assert "MLDecoder section is ignored: Arch.use_ml_decoder is not true" in caplog.text


def test_trains_evaluates_and_exports(demo_root, tmp_path):
    cfg = tiny_config(demo_root, str(tmp_path / "out"), "ResNet18", epochs=1)
    cfg["Arch"]["use_ml_decoder"] = True
    cfg["MLDecoder"] = {**TINY, "query_num": 12}
    cfg["Global"].update(max_train_steps=2, max_eval_steps=1)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    engine = Engine(load_config(str(path)), "train")
    before = engine.model.fc.query_pos_embed.weight.numpy().copy()
    group_before = engine.model.fc.group_conv.weight.numpy().copy()
    result = engine.train()
    assert result["metric_key"] == "top1"
    np.testing.assert_array_equal(engine.model.fc.query_pos_embed.weight.numpy(), before)   # frozen queries
    assert not np.array_equal(engine.model.fc.group_conv.weight.numpy(), group_before)      # the head trained
    from ppfreeze.export import export_model
    config = load_config(str(path), [f"Global.pretrained_model={tmp_path}/out/ResNet18/latest"])
    config["Infer"] = {"transforms": cfg["DataLoader"]["Eval"]["dataset"]["transform_ops"] + [{"ToCHWImage": None}]}
    saved = export_model(config, str(tmp_path / "inference"))
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype("float32")
    out = load_deploy("predictor").Predictor(saved.save_dir, enable_mkldnn=False).run(x)
    engine.model.eval()
    expected = F.softmax(engine.model(paddle.to_tensor(x))).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-6)
