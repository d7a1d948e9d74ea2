"""PaddleClas config keys and components found by running PaddleClas's own config files
(``tools/dev/run_paddleclas_configs.py``): each is implemented with PaddleClas's meaning or refused."""
import numpy as np
import paddle
import pytest

from ppfreeze.arch.gears import GEARS
from ppfreeze.config import ConfigError


# ----------------------------------------------------------------------------- gears: weight_attr / bias_attr
def test_fc_weight_attr_initializer_and_no_bias():
    # GeneralRecognitionV2: Head FC with a Normal(std 0.001) initializer and bias_attr: False
    paddle.seed(0)
    fc = GEARS.build({"name": "FC", "embedding_size": 64, "class_num": 200,
                      "weight_attr": {"initializer": {"name": "Normal", "std": 0.001}}, "bias_attr": False})
    assert list(fc.state_dict()) == ["fc.weight"]
    assert abs(float(fc.fc.weight.std()) - 0.001) < 2e-4


def test_fc_bias_attr_learning_rate_and_regularizer():
    fc = GEARS.build({"name": "FC", "embedding_size": 4, "class_num": 3,
                      "bias_attr": {"initializer": {"name": "Constant", "value": 0.5}, "learning_rate": 1.0e-20,
                                    "regularizer": {"name": "L2Decay", "coeff": 0.1}}})
    assert np.all(fc.fc.bias.numpy() == 0.5)
    assert fc.fc.bias.optimize_attr["learning_rate"] == 1.0e-20
    assert isinstance(fc.fc.bias.regularizer, paddle.regularizer.L2Decay)


def test_fc_default_weights_stay_xavier_normal():
    paddle.seed(0)
    fc = GEARS.build({"name": "FC", "embedding_size": 400, "class_num": 400})
    assert abs(float(fc.fc.weight.std()) - (2.0 / 800) ** 0.5) < 3e-3   # Xavier normal: sqrt(2 / (in + out))
    assert list(fc.state_dict()) == ["fc.weight", "fc.bias"]


def test_weight_attr_unknown_regularizer_is_named():
    with pytest.raises(ConfigError, match=r"weight_attr.regularizer.name: unknown parameter regularizer 'L3Decay'"):
        GEARS.build({"name": "FC", "embedding_size": 4, "class_num": 3,
                     "weight_attr": {"regularizer": {"name": "L3Decay"}}})


# ----------------------------------------------------------------------------- retrieval evaluation keys
def test_feature_normalize_false_ranks_by_inner_product():
    from ppfreeze.retrieval.metrics import recall_at_k
    q, ql = np.array([[1.0, 0.0]]), np.array([0])
    g, gl = np.array([[10.0, 10.0], [1.0, 0.01]]), np.array([0, 1])   # cosine prefers item 1, inner product item 0
    assert recall_at_k(q, ql, g, gl, [1])["recall1"] == 0.0
    assert recall_at_k(q, ql, g, gl, [1], similarity="inner_product")["recall1"] == 1.0


def test_retrieval_features_follow_paddleclas_normalize_and_binarize():
    from ppfreeze.engine.evaluation import _similarity, retrieval_features
    f = np.array([[3.0, -4.0, 0.0], [0.5, 0.5, 0.5 ** 0.5]], dtype=np.float32)
    normed = retrieval_features(f, {})
    np.testing.assert_allclose(normed[0], [0.6, -0.8, 0.0], rtol=1e-6)
    # round: round(normalised) * 2 - 1, halves away from zero like paddle.round (0.5 -> 1, not 0)
    np.testing.assert_array_equal(retrieval_features(f, {"feature_binarize": "round"}),
                                  [[1.0, -3.0, -1.0], [1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(retrieval_features(f, {"feature_binarize": "sign"}), [[1, -1, 0], [1, 1, 1]])
    np.testing.assert_array_equal(retrieval_features(f, {"feature_normalize": False}), f)
    assert _similarity({}) == "cosine"
    assert _similarity({"feature_normalize": False}) == "inner_product"
    assert _similarity({"feature_binarize": "sign"}) == "inner_product"


@pytest.mark.parametrize("glob, match", [
    ({"re_ranking": True}, r"Global.re_ranking: k-reciprocal re-ranking is not implemented"),
    ({"feature_binarize": "hash"}, r"Global.feature_binarize: expected round, sign or null"),
])
def test_retrieval_keys_ppfreeze_cannot_honour_are_refused(glob, match):
    from ppfreeze.engine.evaluation import _similarity
    with pytest.raises(ConfigError, match=match):
        _similarity(glob)
    assert _similarity({"re_ranking": False}) == "cosine"


# ----------------------------------------------------------------------------- sections ppfreeze refuses
@pytest.mark.parametrize("slim, match", [({"quant": {"name": "pact"}}, r"Slim.quant: 'pact' asks for PaddleSlim"),
                                         ({"prune": {"name": "fpgm", "pruned_ratio": 0.3}}, r"Slim.prune: 'fpgm'")])
def test_slim_quantization_or_pruning_is_refused(slim, match):
    from ppfreeze.config.schema import validate_config
    with pytest.raises(ConfigError, match=match):
        validate_config({"Global": {}, "Arch": {"name": "ResNet18"}, "Slim": slim})
    validate_config({"Global": {}, "Arch": {"name": "ResNet18"}, "Slim": {"quant": None}})   # empty: nothing asked


# ----------------------------------------------------------------------------- VehicleNeck, SupConLoss
def test_vehicle_neck_keys_and_output():
    neck = GEARS.build({"name": "VehicleNeck", "in_channels": 8, "out_channels": 5})
    assert {k: v.shape for k, v in neck.state_dict().items()} == {"conv.weight": [5, 8, 1, 1], "conv.bias": [5]}
    x = paddle.randn([3, 8, 1, 1])   # the backbone's avg_pool output
    out = neck(x)
    assert out.shape == [3, 5]
    w, b = neck.conv.weight.numpy()[:, :, 0, 0], neck.conv.bias.numpy()
    np.testing.assert_allclose(out.numpy(), x.numpy()[:, :, 0, 0] @ w.T + b, rtol=1e-5, atol=1e-6)


def _supcon_reference(feats, labels, views, t=0.07, base_t=0.07):
    """Every view an anchor; positives: other views of its label; denominator: every other view."""
    f = feats / (np.linalg.norm(feats, axis=1, keepdims=True) + 1e-12)
    n = len(f)
    losses = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        denom = np.log(sum(np.exp(f[i] @ f[j] / t) for j in others))
        pos = [j for j in others if labels[j] == labels[i]]
        losses.append(-np.mean([f[i] @ f[j] / t - denom for j in pos]) * t / base_t)
    return np.mean(losses)


def test_supcon_loss_matches_its_definition():
    from ppfreeze.loss import LOSSES
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(6, 4)).astype("float32")
    labels = np.array([3, 3, 1, 1, 3, 3])   # 3 identities x 2 views, two of them share label 3
    loss = LOSSES.build({"SupConLoss": {"views": 2}})({"features": paddle.to_tensor(feats)}, paddle.to_tensor(labels))
    assert float(loss) == pytest.approx(_supcon_reference(feats.astype(np.float64), labels, 2), rel=1e-5)


def test_supcon_loss_needs_whole_groups_of_views():
    from ppfreeze.loss import LOSSES
    loss = LOSSES.build({"SupConLoss": {"views": 2}})
    with pytest.raises(ConfigError, match=r"views: a batch of 5 images is not made of groups of 2"):
        loss({"features": paddle.randn([5, 4])}, paddle.to_tensor([0, 0, 1, 1, 2]))


# ----------------------------------------------------------------------------- MLDecoder
def _ml_decoder_model(**section):
    from ppfreeze.arch import build_model
    paddle.seed(0)
    return build_model({"name": "PPLCNet_x0_25", "class_num": 5, "use_ml_decoder": True},
                       ml_decoder={"in_channels": 1280, "embed_dim": 16, "num_heads": 2, "mlp_hidden_dim": 32,
                                   **section})


def test_ml_decoder_replaces_pooling_and_classifier():
    from ppfreeze.arch import contract_violations
    model = _ml_decoder_model(query_num=2)   # 2 queries x ceil(5 / 2) = 6 outputs, the first 5 kept
    keys = list(model.state_dict())
    assert "fc.weight" not in keys and "fc.decoder.layers.0.cross_attn.q_proj.weight" in keys
    assert not any(".self_attn." in k for k in keys)   # the first layer's self-attention is removed
    assert model.state_dict()["fc.group_conv.weight"].shape == [6, 16, 1, 1]
    assert isinstance(model.avg_pool, paddle.nn.Identity) and isinstance(model.flatten, paddle.nn.Identity)
    model.eval()
    assert model(paddle.randn([2, 3, 32, 32])).shape == [2, 5]
    assert contract_violations(model) == []


def test_ml_decoder_query_embedding_is_frozen_and_deeper_layers_keep_self_attention():
    model = _ml_decoder_model(depth=2)
    assert model.fc.query_pos_embed.weight.stop_gradient
    keys = list(model.state_dict())
    assert any(k.startswith("fc.decoder.layers.1.self_attn.") for k in keys)
    assert not any(k.startswith("fc.decoder.layers.0.self_attn.") for k in keys)
    assert not _ml_decoder_model(freeze_query_embed=False).fc.query_pos_embed.weight.stop_gradient


def test_ml_decoder_names_a_missing_layer():
    with pytest.raises(ConfigError, match=r"MLDecoder.replace_layer: PPLCNet\w* has no sublayer 'head'"):
        _ml_decoder_model(replace_layer="head")
