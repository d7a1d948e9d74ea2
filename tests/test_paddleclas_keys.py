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


# ----------------------------------------------------------------------------- metric-learning and hashing losses
def _loss(name, **kwargs):
    from ppfreeze.loss import LOSSES
    return LOSSES.build({name: kwargs})


def _unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_triplet_angular_margin_loss_hand_checked():
    # cos(a0, a1) = 0.6 (same label), cos(a0, b) = 0.8 (other label): violated by 0.8 - 0.6 + 0.5 = 0.7
    x = _unit([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6], [0.8, 0.6]])
    labels = paddle.to_tensor([0, 0, 1, 1])
    loss = _loss("TripletAngularMarginLoss", margin=0.5)({"features": paddle.to_tensor(x)}, labels)
    sim = x @ x.T
    same = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], bool)
    ap, an = np.where(same, sim, 9).min(1), np.where(same, -9, sim).max(1)
    assert float(loss) == pytest.approx(np.maximum(an - ap + 0.5, 0).mean(), rel=1e-5)
    assert np.maximum(an - ap + 0.5, 0)[0] == pytest.approx(0.7, rel=1e-5)


def test_pairwise_cosface_and_contrastive_loss_hand_checked():
    x = _unit([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    feats, labels = {"features": paddle.to_tensor(x)}, paddle.to_tensor([[0], [0], [1]])
    sim = x @ x.T   # 0.6 between the positives, 0 and 0.8 to the negative
    lse = lambda v: np.log(np.sum(np.exp(v)))  # noqa: E731
    expected = np.mean([np.log1p(np.exp(lse([-2 * 0.6]) + lse([2 * (sim[0, 2] + 0.3)]))),
                        np.log1p(np.exp(lse([-2 * 0.6]) + lse([2 * (sim[1, 2] + 0.3)]))),
                        np.log1p(np.exp(-99999999.0 + np.log(1) + lse([2 * (sim[2, 0] + 0.3), 2 * (sim[2, 1] + 0.3)])))])
    assert float(_loss("PairwiseCosface", margin=0.3, gamma=2.0)(feats, labels)) == pytest.approx(expected, rel=1e-5)
    # contrastive: positives cost 1 - 0.6 each (rows 0, 1); the negative pair 0.8 > margin 0.5 costs 0.8 twice
    loss = _loss("ContrastiveLoss", margin=0.5, embedding_size=2)(feats, labels)
    assert float(loss) == pytest.approx((0.4 + (0.4 + 0.8) + 0.8) / 3, rel=1e-5)


def test_contrastive_xbm_memory_joins_after_start_iter_and_wraps():
    loss = _loss("ContrastiveLoss_XBM", xbm_size=5, xbm_weight=1.0, start_iter=1, margin=0.5, embedding_size=2)
    plain = _loss("ContrastiveLoss", margin=0.5, embedding_size=2)
    batch = {"features": paddle.to_tensor(_unit([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]))}
    labels = paddle.to_tensor([0, 0, 1])
    assert float(loss(batch, labels)) == pytest.approx(float(plain(batch, labels)))   # step 1: no memory yet
    # step 2: the batch is stored, then compared with the memory (itself): the plain loss twice
    assert float(loss(batch, labels)) == pytest.approx(2 * float(plain(batch, labels)), rel=1e-5)
    loss(batch, labels)   # 3 + 3 > 5: written to the last 3 slots, the bank is full from now on
    assert loss.memory.full and loss.memory.ptr == 0 and loss.memory.get()[0].shape == [5, 2]


def test_hashing_losses_hand_checked():
    codes = np.array([[0.5, -0.5], [0.5, 0.5]], dtype=np.float32)
    out, labels = {"features": paddle.to_tensor(codes)}, paddle.to_tensor([[1], [1]])
    # LCDSH, both similar (s = 1): inner products / 2 = [[0.25, 0], [0, 0.25]]; signs give [[1, 0], [0, 1]]
    inner, inner_b = np.array([[0.25, 0.0], [0.0, 0.25]]), np.array([[1.0, 0.0], [0.0, 1.0]])
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    expected = np.log1p(np.exp(-inner)).mean() + 3.0 * ((sig(inner) - sig(inner_b)) ** 2).mean()
    assert float(_loss("LCDSHLoss", n_class=2, _lambda=3.0)(out, labels)) == pytest.approx(expected, rel=1e-5)
    # DSHSD with both samples of one class: distance term (1/2) d^2 over pairs, d^2 = 1 off the diagonal
    logits = np.array([[2.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    ce = -np.log(np.exp(logits[:, 1]) / np.exp(logits).sum(1)).mean()
    value = _loss("DSHSDLoss", alpha=0.5)({**out, "logits": paddle.to_tensor(logits)}, labels)
    assert float(value) == pytest.approx(ce + 0.5 * (0.5 * 1.0 * 2 / 4), rel=1e-5)


def test_recmodel_tanh_neck_and_head_feature_from_backbone():
    from ppfreeze.arch import build_model
    paddle.seed(0)
    model = build_model({"name": "RecModel", "is_rec": True, "Backbone": {"name": "PPLCNet_x0_25", "class_num": 6},
                         "Neck": {"name": "Tanh"}, "Head": {"name": "FC", "embedding_size": 6, "class_num": 3}})
    model.eval()
    out = model(paddle.randn([2, 3, 32, 32]))
    np.testing.assert_allclose(out["features"].numpy(), np.tanh(out["backbone"].numpy()), rtol=1e-6)
    assert model.num_features == 6 and out["logits"].shape == [2, 3]
    model = build_model({"name": "RecModel", "head_feature_from": "backbone",
                         "Backbone": {"name": "PPLCNet_x0_25"}, "BackboneStopLayer": {"name": "flatten"},
                         "Neck": {"name": "FC", "embedding_size": 1280, "class_num": 8},
                         "Head": {"name": "FC", "embedding_size": 1280, "class_num": 3}})   # the head reads 1280-d
    model.eval()
    out = model(paddle.randn([2, 3, 32, 32]))
    assert out["features"].shape == [2, 8] and out["logits"].shape == [2, 3]


# ----------------------------------------------------------------------------- FixMatch
def test_fixmatch_loss_counts_confident_pseudo_labels_only():
    from ppfreeze.engine.semi_supervised import FixMatch
    from ppfreeze.loss import CELoss, build_loss
    fixmatch = FixMatch(None, CELoss(), threshold=0.9)
    # a "model" that returns its input as logits: labeled 2, weak 2, strong 2 rows
    x = paddle.to_tensor([[5.0, 0.0], [0.0, 1.0]])
    weak = paddle.to_tensor([[10.0, 0.0], [0.2, 0.0]])      # confident class 0; unsure
    strong = paddle.to_tensor([[1.0, 2.0], [3.0, 0.0]])
    train_loss = build_loss([{"CELoss": {"weight": 1.0}}], "Loss.Train")
    logits_x, losses = fixmatch.forward_and_loss(lambda batch: batch, train_loss, x, paddle.to_tensor([0, 1]),
                                                 [weak, strong, paddle.to_tensor([0, 0])])
    np.testing.assert_array_equal(logits_x.numpy(), x.numpy())
    ce_strong_0 = np.log(np.exp(1.0) + np.exp(2.0)) - 1.0      # strong row 0 against pseudo label 0
    assert float(losses["CELoss_unlabel"]) == pytest.approx(ce_strong_0 / 2, rel=1e-5)   # averaged over both rows
    assert float(losses["loss"]) == pytest.approx(float(losses["CELoss_label"]) + ce_strong_0 / 2, rel=1e-5)


def test_fixmatch_config_mistakes_are_named():
    from ppfreeze.engine.semi_supervised import FixMatch, FixMatchCCSSL
    with pytest.raises(ConfigError, match=r"Global.iter_per_epoch: semi-supervised training needs it"):
        FixMatch.from_config({"Global": {}, "SSL": {"threshold": 0.9}}, 0)
    with pytest.raises(ConfigError, match=r"UnLabelLoss.Train.0: FixMatch's unlabeled loss is the cross entropy"):
        FixMatch._unlabeled_losses({"Train": [{"SupConLoss": {"weight": 1.0}}]})
    with pytest.raises(ConfigError, match=r"UnLabelLoss.Train.1.CELoss: CCSSL's unlabeled losses are"):
        FixMatchCCSSL._unlabeled_losses({"Train": [{"CCSSLCELoss": {"weight": 1.0}}, {"CELoss": {}}]})


# ----------------------------------------------------------------------------- PKSampler: PaddleClas's weighted draws
def test_pk_sampler_id_list_ratio_weights_identities_as_paddleclas():
    from collections import Counter
    from ppfreeze.data.pk_sampler import PKSampler

    class Labelled:   # identities 7, 3, 9 (first-appearance positions 0, 1, 2), 4 images each
        labels = [7, 7, 3, 3, 9, 9, 7, 7, 3, 3, 9, 9]

    sampler = PKSampler(Labelled(), batch_size=2, sample_per_id=2, sample_method="id_avg_prob",
                        id_list=[1, 1], ratio=[4.0], seed=0)
    assert sampler.draw_probabilities == {7: 1 / 6, 3: 4 / 6, 9: 1 / 6}   # position 1 (identity 3) x4
    assert len(sampler) == 6   # 12 images / batch_size 2
    seen = Counter()
    for epoch in range(40):
        sampler.set_epoch(epoch)
        for batch in sampler:
            assert len({Labelled.labels[i] for i in batch}) == 1 and len(batch) == 2
            seen[Labelled.labels[batch[0]]] += 1
    assert seen[3] > 2 * seen[7] and seen[3] > 2 * seen[9]
    with pytest.raises(ConfigError, match="id_list"):
        PKSampler(Labelled(), 2, 2, id_list=[0, 1, 2], ratio=[2.0])


# ----------------------------------------------------------------------------- ReduceOnPlateau in the engine
def test_reduce_on_plateau_is_stepped_with_the_eval_metric(make_config, monkeypatch):
    from ppfreeze.engine import Engine
    cfg, _ = make_config(arch="PPLCNet_x0_25", epochs=2, max_train_steps=1, max_eval_steps=1)
    cfg["Optimizer"] = {"name": "Momentum", "momentum": 0.9,
                        "lr": {"name": "ReduceOnPlateau", "learning_rate": 0.1, "mode": "max", "patience": 0,
                               "factor": 0.5, "by_epoch": True}}
    engine = Engine(cfg, mode="train")
    seen = []
    original = Engine.eval

    def fixed_metric(self, epoch=0):
        original(self, epoch)
        seen.append(self.lr_scheduler.last_lr)
        return {"top1": 0.5, "loss": 1.0}   # never improves after epoch 1

    monkeypatch.setattr(Engine, "eval", fixed_metric)
    engine.train()
    # epoch 1 sets the best; epoch 2 does not improve, patience 0: halved after its evaluation only
    assert seen == [0.1, 0.1] and engine.lr_scheduler.last_lr == pytest.approx(0.05)
