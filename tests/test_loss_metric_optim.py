"""Losses, metrics, optimizers, learning-rate schedules and gradient clipping."""
import copy
import logging
import math

import numpy as np
import paddle
import pytest

from ppfreeze.config.errors import ConfigError
from ppfreeze.loss import CELoss, build_loss
from ppfreeze.metric import MetricAccumulator, TopkAcc, build_metrics
from ppfreeze.optim import build_lr_scheduler, build_optimizer

EPOCHS, STEPS = 10, 2


def _log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


@pytest.fixture
def logits_and_labels():
    rng = np.random.default_rng(0)
    return rng.normal(size=(4, 5)).astype("float32"), np.array([0, 3, 1, 4], dtype="int64")


# --------------------------------------------------------------------------- losses

def test_celoss_matches_manual_cross_entropy(logits_and_labels):
    x, y = logits_and_labels
    expected = -_log_softmax(x)[np.arange(4), y].mean()
    loss = CELoss()
    for label in (y, y.reshape(-1, 1)):
        got = loss(paddle.to_tensor(x), paddle.to_tensor(label))
        np.testing.assert_allclose(float(got), expected, rtol=1e-5)
    from_dict = loss({"logits": paddle.to_tensor(x), "features": paddle.zeros([4, 2])}, paddle.to_tensor(y))
    np.testing.assert_allclose(float(from_dict), expected, rtol=1e-5)


def test_celoss_label_smoothing_and_soft_targets(logits_and_labels):
    x, y = logits_and_labels
    target = np.eye(5, dtype="float32")[y] * 0.9 + 0.1 / 5
    expected = -(_log_softmax(x) * target).sum(axis=-1).mean()
    got = CELoss(epsilon=0.1)(paddle.to_tensor(x), paddle.to_tensor(y.reshape(-1, 1)))
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)
    soft = np.full((4, 5), 0.2, dtype="float32")  # e.g. a mixup target
    got_soft = CELoss()(paddle.to_tensor(x), paddle.to_tensor(soft))
    np.testing.assert_allclose(float(got_soft), -(_log_softmax(x) * 0.2).sum(axis=-1).mean(), rtol=1e-5)
    assert CELoss(epsilon=0.0).epsilon is None


def test_combined_loss_weights_and_names(logits_and_labels):
    x, y = logits_and_labels
    combined = build_loss([{"CELoss": {"weight": 1.0}}, {"CELoss": {"weight": 0.5, "epsilon": 0.1}}], "Loss.Train")
    out = combined(paddle.to_tensor(x), paddle.to_tensor(y))
    assert sorted(out) == ["CELoss", "CELoss_1", "loss"]
    plain = float(CELoss()(paddle.to_tensor(x), paddle.to_tensor(y)))
    smooth = float(CELoss(epsilon=0.1)(paddle.to_tensor(x), paddle.to_tensor(y)))
    np.testing.assert_allclose(float(out["CELoss_1"]), 0.5 * smooth, rtol=1e-5)
    np.testing.assert_allclose(float(out["loss"]), plain + 0.5 * smooth, rtol=1e-5)


def test_build_loss_errors():
    with pytest.raises(ConfigError, match="Loss.Train: no loss configured"):
        build_loss(None, "Loss.Train")
    assert build_loss([], "Loss.Eval") is None
    with pytest.raises(ConfigError, match=r"Loss.Train.0: unknown loss 'CELos'.*Did you mean: CELoss"):
        build_loss([{"CELos": {"weight": 1.0}}], "Loss.Train")
    with pytest.raises(ConfigError, match=r"Loss.Train.0.CELoss.*epsilon must be in \[0, 1\)"):
        build_loss([{"CELoss": {"weight": 1.0, "epsilon": 1.5}}], "Loss.Train")
    with pytest.raises(ConfigError, match=r"Loss.Train.0.CELoss.epsilo\b"):
        build_loss([{"CELoss": {"weight": 1.0, "epsilo": 0.1}}], "Loss.Train")


# --------------------------------------------------------------------------- metrics

KNOWN_LOGITS = np.array([[0.1, 0.6, 0.3],    # label 1: top1 hit
                         [0.7, 0.2, 0.1],    # label 1: second -> top2 hit
                         [0.5, 0.3, 0.2],    # label 2: third -> miss for k<=2
                         [0.2, 0.1, 0.7]], dtype="float32")  # label 2: top1 hit
KNOWN_LABELS = np.array([1, 1, 2, 2], dtype="int64")


def test_topk_accuracy_on_known_logits(caplog):
    metric = TopkAcc(topk=[1, 2, 5])
    with caplog.at_level(logging.WARNING):
        got = metric({"logits": paddle.to_tensor(KNOWN_LOGITS)}, paddle.to_tensor(KNOWN_LABELS.reshape(-1, 1)))
    assert got == {"top1": 0.5, "top2": 0.75, "top5": 1.0}
    assert "exceeds the 3 classes" in caplog.text


def test_build_metrics_and_weighted_accumulator():
    metrics = build_metrics([{"TopkAcc": {"topk": [1, 2]}}], "Metric.Eval")
    assert metrics(paddle.to_tensor(KNOWN_LOGITS), paddle.to_tensor(KNOWN_LABELS)) == {"top1": 0.5, "top2": 0.75}
    assert build_metrics(None, "Metric.Train") is None
    with pytest.raises(ConfigError, match="Metric.Eval.0.TopkAcc"):
        build_metrics([{"TopkAcc": {"topk": 0}}], "Metric.Eval")
    acc = MetricAccumulator()
    acc.update({"top1": 1.0}, batch_size=2)
    acc.update({"top1": 0.0}, batch_size=6)
    assert acc.average() == {"top1": 0.25}
    acc.reset()
    assert acc.average() == {}


# --------------------------------------------------------------------------- optimizers

CONSTANT_LR = {"name": "Constant", "learning_rate": 0.1}
OPTIMIZER_CFGS = {
    "SGD": {"name": "SGD"},
    "Momentum+L2": {"name": "Momentum", "momentum": 0.9, "regularizer": {"name": "L2", "coeff": "1e-4"}},
    "Adam": {"name": "Adam", "beta1": 0.9, "beta2": 0.999, "epsilon": "1e-8"},
    "AdamW": {"name": "AdamW", "weight_decay": 0.05},
    "RMSProp": {"name": "RMSProp", "rho": 0.9, "momentum": 0.5},
}


def _two_layer_model():
    paddle.seed(0)
    return paddle.nn.Sequential(paddle.nn.Linear(4, 4), paddle.nn.Linear(4, 3))


def _train_steps(model, optimizer, n=3):
    x = paddle.to_tensor(np.random.default_rng(1).normal(size=(8, 4)).astype("float32"))
    for _ in range(n):
        loss = (model(x) ** 2).mean()
        loss.backward()
        optimizer.step()
        optimizer.clear_grad(set_to_zero=False)


@pytest.mark.parametrize("label", sorted(OPTIMIZER_CFGS))
def test_zero_lr_multiplier_keeps_parameter_bit_identical(label):
    model = _two_layer_model()
    frozen = model[0].weight
    frozen.optimize_attr["learning_rate"] = 0.0
    before = {n: p.numpy().copy() for n, p in model.named_parameters()}
    cfg = dict(OPTIMIZER_CFGS[label], lr=CONSTANT_LR)
    optimizer, _ = build_optimizer(cfg, model.named_parameters(), EPOCHS, STEPS)
    assert type(optimizer).__name__ == cfg["name"]
    _train_steps(model, optimizer)
    after = dict(model.named_parameters())
    assert np.array_equal(after["0.weight"].numpy(), before["0.weight"])
    for name in ("0.bias", "1.weight", "1.bias"):
        assert not np.allclose(after[name].numpy(), before[name]), f"{label}: {name} did not move"


def _decay_only_step(cfg):
    """One AdamW step with all-zero gradients: only weight decay can move a parameter."""
    model = paddle.nn.Sequential(paddle.nn.Linear(3, 2))
    for param in model.parameters():
        param.set_value(paddle.ones_like(param))  # the default zero bias would not show decay
    before = {n: p.numpy().copy() for n, p in model.named_parameters()}
    optimizer, _ = build_optimizer(dict(cfg, name="AdamW", lr=CONSTANT_LR), model.named_parameters(), EPOCHS, STEPS)
    (model(paddle.ones([2, 3])) * 0.0).sum().backward()
    optimizer.step()
    return before, dict(model.named_parameters())


def test_no_weight_decay_name_uses_structured_names():
    before, after = _decay_only_step({"weight_decay": 0.5, "no_weight_decay_name": "pos_embed bias"})
    assert "bias" not in after["0.bias"].name  # Paddle's own name would not match the fragment
    np.testing.assert_array_equal(after["0.bias"].numpy(), before["0.bias"])
    np.testing.assert_allclose(after["0.weight"].numpy(), before["0.weight"] * (1 - 0.1 * 0.5), rtol=1e-6)


def test_one_dim_params_can_skip_weight_decay():
    before, after = _decay_only_step({"weight_decay": 0.5, "one_dim_param_no_weight_decay": True})
    np.testing.assert_array_equal(after["0.bias"].numpy(), before["0.bias"])
    np.testing.assert_allclose(after["0.weight"].numpy(), before["0.weight"] * (1 - 0.1 * 0.5), rtol=1e-6)


def test_weight_decay_applies_to_all_by_default():
    before, after = _decay_only_step({"weight_decay": 0.5})
    for name in ("0.weight", "0.bias"):
        np.testing.assert_allclose(after[name].numpy(), before[name] * (1 - 0.1 * 0.5), rtol=1e-6)


def test_optimizer_config_errors():
    params = list(_two_layer_model().named_parameters())
    with pytest.raises(ConfigError, match=r"Optimizer.name: unknown optimizer 'Momentun'.*Did you mean: Momentum"):
        build_optimizer({"name": "Momentun", "lr": CONSTANT_LR}, params, EPOCHS, STEPS)
    with pytest.raises(ConfigError, match=r"Optimizer.momentun: 'Momentum' has no argument 'momentun'"):
        build_optimizer({"name": "Momentum", "momentun": 0.9, "lr": CONSTANT_LR}, params, EPOCHS, STEPS)
    with pytest.raises(ConfigError, match=r"Optimizer.regularizer.name: unknown regularizer 'L3'"):
        build_optimizer({"name": "SGD", "lr": CONSTANT_LR, "regularizer": {"name": "L3"}}, params, EPOCHS, STEPS)
    with pytest.raises(ConfigError, match="Optimizer.lr: no learning-rate section"):
        build_optimizer({"name": "SGD"}, params, EPOCHS, STEPS)
    with pytest.raises(ConfigError, match="Optimizer.regularizer: AdamW decays weights itself"):
        build_optimizer({"name": "AdamW", "lr": CONSTANT_LR, "regularizer": {"name": "L2", "coeff": 1e-4}},
                        params, EPOCHS, STEPS)


# --------------------------------------------------------------------------- gradient clipping

def test_clip_by_global_norm_clips_the_update():
    model = _two_layer_model()
    before = [p.numpy().copy() for p in model.parameters()]
    cfg = {"name": "SGD", "lr": {"name": "Constant", "learning_rate": 1.0},
           "grad_clip": {"name": "ClipGradByGlobalNorm", "clip_norm": 0.01}}
    optimizer, _ = build_optimizer(cfg, model.named_parameters(), EPOCHS, STEPS)
    x = paddle.full([8, 4], 10.0)
    (model(x) ** 2).mean().backward()
    raw_norm = math.sqrt(sum(float((p.grad ** 2).sum()) for p in model.parameters()))
    optimizer.step()
    update_norm = math.sqrt(sum(((p.numpy() - b) ** 2).sum() for p, b in zip(model.parameters(), before)))
    assert raw_norm > 1.0
    assert update_norm == pytest.approx(0.01, rel=1e-3)


def test_clip_shorthands_keep_paddleclas_meaning():
    params = list(_two_layer_model().named_parameters())
    per_tensor, _ = build_optimizer({"name": "SGD", "lr": CONSTANT_LR, "clip_norm": 5.0}, params, EPOCHS, STEPS)
    assert isinstance(per_tensor._grad_clip, paddle.nn.ClipGradByNorm)
    global_, _ = build_optimizer({"name": "SGD", "lr": CONSTANT_LR, "clip_norm_global": 5.0}, params, EPOCHS, STEPS)
    assert isinstance(global_._grad_clip, paddle.nn.ClipGradByGlobalNorm)
    with pytest.raises(ConfigError, match="gradient clipping is set twice"):
        build_optimizer({"name": "SGD", "lr": CONSTANT_LR, "clip_norm": 1.0,
                         "grad_clip": {"name": "ClipGradByValue", "max": 1.0}}, params, EPOCHS, STEPS)
    with pytest.raises(ConfigError, match=r"Optimizer.grad_clip.clip_norm: must be > 0"):
        build_optimizer({"name": "SGD", "lr": CONSTANT_LR, "grad_clip": {"ClipGradByNorm": {"clip_norm": -1}}},
                        params, EPOCHS, STEPS)



def test_clip_grad_is_ignored_for_adamw_as_paddleclas_does(caplog):
    """PaddleClas's AdamW swallows clip_grad in **args (its MobileNetV4 configs train unclipped);
    on an optimizer that would refuse it there, it stays an error here."""
    params = list(_two_layer_model().named_parameters())
    with caplog.at_level("WARNING", logger="ppfreeze"):
        opt, _ = build_optimizer({"name": "AdamW", "lr": CONSTANT_LR, "clip_grad": 5.0}, params, EPOCHS, STEPS)
    assert opt._grad_clip is None
    assert "Optimizer.clip_grad (5.0) is ignored, as PaddleClas's AdamW ignores it" in caplog.text
    with pytest.raises(ConfigError, match="Optimizer.clip_grad"):
        build_optimizer({"name": "Momentum", "momentum": 0.9, "lr": CONSTANT_LR, "clip_grad": 5.0}, params, EPOCHS,
                        STEPS)

# --------------------------------------------------------------------------- learning-rate schedules

def test_paddle_scheduler_verbose_key_is_accepted(caplog):
    """PaddleClas's retrieval configs write lr.verbose: False (an argument of Paddle's schedulers)."""
    quiet = build_lr_scheduler({"name": "MultiStepDecay", "learning_rate": 0.1, "milestones": [1], "verbose": False},
                               EPOCHS, STEPS)
    plain = build_lr_scheduler({"name": "MultiStepDecay", "learning_rate": 0.1, "milestones": [1]}, EPOCHS, STEPS)
    assert quiet() == plain() == 0.1 and "verbose" not in caplog.text
    with caplog.at_level("WARNING", logger="ppfreeze"):
        build_lr_scheduler({"name": "Cosine", "learning_rate": 0.1, "verbose": True}, EPOCHS, STEPS)
    assert "Optimizer.lr.verbose: ignored" in caplog.text


def _rates(cfg, n, epochs=EPOCHS, steps=STEPS):
    """Learning rate used at iterations 0..n-1 (the scheduler steps after each one)."""
    scheduler = build_lr_scheduler(cfg, epochs, steps)
    rates = []
    for _ in range(n):
        rates.append(scheduler())
        scheduler.step()
    return rates


def _cosine(t, total, base=0.1, eta_min=0.0):
    return eta_min + (base - eta_min) * (1 + math.cos(math.pi * t / total)) / 2


@pytest.mark.parametrize("cfg, expected", [
    ({"name": "Constant", "learning_rate": 0.1, "warmup_epoch": 1},
     {0: 0.0, 1: 0.05, 2: 0.1, 7: 0.1}),
    ({"name": "Cosine", "learning_rate": 0.1, "warmup_epoch": 1, "warmup_start_lr": 0.02},  # 2 warmup + 18 cosine
     {0: 0.02, 1: 0.06, 2: 0.1, 5: _cosine(3, 18), 11: _cosine(9, 18), 19: _cosine(17, 18)}),
    ({"name": "Cosine", "learning_rate": 0.1, "eta_min": 0.01},
     {0: 0.1, 10: _cosine(10, 20, eta_min=0.01), 19: _cosine(19, 20, eta_min=0.01)}),
    ({"name": "Piecewise", "decay_epochs": [3, 6], "values": [0.1, 0.01, 0.001]},
     {0: 0.1, 5: 0.1, 6: 0.01, 11: 0.01, 12: 0.001}),
    # as many values as decay epochs (PaddleClas's Attr/StrongBaselineAttr.yaml): Paddle keeps values[-1]
    # after decay_epochs[-2], the last decay epoch does nothing
    ({"name": "Piecewise", "decay_epochs": [3, 6], "values": [0.1, 0.01]},
     {0: 0.1, 5: 0.1, 6: 0.01, 12: 0.01, 19: 0.01}),
    ({"name": "Piecewise", "decay_epochs": [3], "values": [0.1, 0.01], "warmup_epoch": 1},  # counted after warmup
     {0: 0.0, 1: 0.05, 2: 0.1, 7: 0.1, 8: 0.01}),
    ({"name": "Step", "learning_rate": 0.1, "step_size": 2, "gamma": 0.5},
     {0: 0.1, 3: 0.1, 4: 0.05, 8: 0.025}),
    ({"name": "MultiStepDecay", "learning_rate": 0.1, "milestones": [2, 5], "gamma": 0.1},
     {3: 0.1, 4: 0.01, 9: 0.01, 10: 0.001}),
    ({"name": "Step", "learning_rate": 0.1, "step_size": 2, "gamma": 0.5, "by_epoch": True},
     {0: 0.1, 1: 0.1, 2: 0.05, 4: 0.025}),
    ({"learning_rate": "0.4/4"}, {0: 0.1, 9: 0.1}),  # PaddleClas: no name means a constant rate
])
def test_schedule_values(cfg, expected):
    rates = _rates(cfg, max(expected) + 1)
    for t, value in expected.items():
        assert rates[t] == pytest.approx(value, abs=1e-9), f"iteration {t}"


def test_by_epoch_flag_is_recorded():
    assert build_lr_scheduler({"name": "Cosine", "learning_rate": 0.1, "by_epoch": True}, EPOCHS, STEPS).by_epoch
    assert not build_lr_scheduler({"name": "Cosine", "learning_rate": 0.1}, EPOCHS, STEPS).by_epoch


def test_scheduler_state_dict_round_trip():
    cfg = {"name": "Cosine", "learning_rate": 0.1, "warmup_epoch": 2}
    original = build_lr_scheduler(cfg, EPOCHS, STEPS)
    for _ in range(3):  # stop inside the warmup
        original.step()
    state = copy.deepcopy(original.state_dict())
    resumed = build_lr_scheduler(cfg, EPOCHS, STEPS)
    resumed.set_state_dict(state)
    for _ in range(6):  # continue across the end of the warmup
        assert resumed() == original()
        original.step()
        resumed.step()
    assert resumed.state_dict() == original.state_dict()


@pytest.mark.parametrize("cfg, match", [
    ({"name": "Cosine", "learning_rate": -0.1}, r"Optimizer.lr.learning_rate: a learning rate must be >= 0"),
    ({"name": "Piecewise", "decay_epochs": [3, 6, 9], "values": [0.1, 0.01]}, r"Optimizer.lr.values: needs one more"),
    ({"name": "MultiStepDecay", "learning_rate": 0.1, "milestones": [5, 2]}, r"Optimizer.lr.milestones"),
    ({"name": "Step", "learning_rate": 0.1, "step_size": 2, "gamma": 2}, r"Optimizer.lr.gamma: must be in \(0, 1\)"),
    ({"name": "Constant", "learning_rate": 0.1, "warmup_epoch": 1, "warmup_start_lr": 0.5},
     r"Optimizer.lr.warmup_start_lr"),
    ({"name": "Cosin", "learning_rate": 0.1}, r"Optimizer.lr.name: unknown lr schedule 'Cosin'.*Did you mean: Cosine"),
    ({"name": "Cosine", "learning_rate": "abc"}, r"Optimizer.lr.learning_rate: expected a number"),
    ({"name": "Cosine", "learning_rate": 0.1, "by_epoch": "yes"}, r"Optimizer.lr.by_epoch: expected true or false"),
])
def test_schedule_config_errors(cfg, match):
    with pytest.raises(ConfigError, match=match):
        build_lr_scheduler(cfg, EPOCHS, STEPS)


def test_piecewise_from_learning_rate_follows_paddleclas():
    from ppfreeze.optim.lr import build_lr_scheduler
    sched = build_lr_scheduler({"name": "Piecewise", "learning_rate": 0.1}, 90, 2)
    rates = []
    for _ in range(180):
        rates.append(sched.last_lr)
        sched.step()
    # divide by 10 at epochs 30 and 60 (steps 60 and 120), whatever decay_epochs/values would say
    assert rates[0] == rates[59] == pytest.approx(0.1)
    assert rates[60] == pytest.approx(0.01) and rates[120] == pytest.approx(0.001)
    short = build_lr_scheduler({"name": "Piecewise", "learning_rate": 0.1}, 5, 2)
    assert short.last_lr == pytest.approx(0.1)


def test_onecycle_and_cosine_fixmatch_follow_paddle_and_fixmatch():
    from paddle.optimizer import lr as paddle_lr
    ours = _rates({"name": "OneCycleLR", "max_learning_rate": 0.1, "phase_pct": 0.2}, 20)
    ref = paddle_lr.OneCycleLR(0.1, total_steps=EPOCHS * STEPS, phase_pct=0.2, end_learning_rate=1e-10)
    expected = []
    for _ in range(20):
        expected.append(ref.last_lr)
        ref.step()
    assert ours == pytest.approx(expected, abs=1e-12)
    rates = _rates({"name": "CosineFixmatch", "learning_rate": 0.03, "num_warmup_steps": 4, "num_cycles": 0.4375}, 20)
    assert rates[0] == 0.0 and rates[2] == pytest.approx(0.015) and rates[4] == pytest.approx(0.03)
    assert rates[12] == pytest.approx(0.03 * math.cos(math.pi * 0.4375 * 8 / 16))   # progress (12 - 4) / (20 - 4)


def test_reduce_on_plateau_steps_on_the_metric_only():
    sched = build_lr_scheduler({"name": "ReduceOnPlateau", "learning_rate": 0.1, "mode": "max", "patience": 1,
                                "factor": 0.5, "by_epoch": True}, EPOCHS, STEPS)
    assert sched.by_epoch and sched.steps_on_metric
    for acc in (0.5, 0.4, 0.3):   # no improvement for 2 evaluations > patience 1
        sched.step(acc)
    assert sched.last_lr == pytest.approx(0.05)
    with pytest.raises(ConfigError, match=r"Optimizer.lr.by_epoch: ReduceOnPlateau steps on the evaluation metric"):
        build_lr_scheduler({"name": "ReduceOnPlateau", "learning_rate": 0.1}, EPOCHS, STEPS)


def test_last_epoch_starts_the_schedule_one_step_later_as_paddle():
    # PaddleClas's reid configs: Piecewise by epoch with last_epoch 0 decays one epoch early
    cfg = {"name": "Piecewise", "decay_epochs": [3, 6], "values": [0.1, 0.01, 0.001], "by_epoch": True}
    shifted = build_lr_scheduler({**cfg, "last_epoch": 0}, EPOCHS, STEPS)
    rates = []
    for _ in range(6):
        rates.append(shifted.last_lr)
        shifted.step()
    assert rates == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.01, 0.001])
    assert build_lr_scheduler({"name": "ConstLR", "learning_rate": 5.0}, EPOCHS, STEPS).last_lr == 5.0


def test_adamwdl_layerwise_rates_and_paddleclas_decay():
    from ppfreeze.optim.optimizer import layerwise_ratios

    class ViTLike(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.patch_embed = paddle.nn.Linear(2, 2)
            self.blocks = paddle.nn.LayerList([paddle.nn.Linear(2, 2) for _ in range(2)])
            self.head = paddle.nn.Linear(2, 2)

        def forward(self, x):
            x = self.patch_embed(x)
            for block in self.blocks:
                x = block(x)
            return self.head(x)

    ratios = layerwise_ratios(["patch_embed.weight", "blocks.0.weight", "blocks.1.bias", "head.weight"], 0.5)
    assert ratios == {"patch_embed.weight": 0.125, "blocks.0.weight": 0.25, "blocks.1.bias": 0.5, "head.weight": 1.0}
    paddle.seed(0)
    model = ViTLike()
    before = {n: p.numpy().copy() for n, p in model.named_parameters()}
    opt, _ = build_optimizer({"name": "AdamWDL", "weight_decay": 0.5, "layerwise_decay": 0.5,
                              "lr": {"name": "Constant", "learning_rate": 0.1}}, list(model.named_parameters()), 1, 1)
    (model(paddle.ones([1, 2])) ** 2).sum().backward()
    grads = {n: p.grad.numpy().copy() for n, p in model.named_parameters()}
    opt.step()
    for name, p in model.named_parameters():
        rate = 0.1 * ratios.get(name, {"patch_embed": 0.125, "blocks.0": 0.25, "blocks.1": 0.5}.get(
            name.rsplit(".", 1)[0], 1.0))
        step = rate * np.sign(grads[name])   # Adam's first step: m / sqrt(v) = sign(g)
        # biases are not decayed; weights twice, as PaddleClas's AdamWDL does on Paddle 3
        shrink = 1.0 if name.endswith("bias") else (1 - 0.1 * 0.5) * (1 - rate * 0.5)
        np.testing.assert_allclose(p.numpy(), before[name] * shrink - step, rtol=1e-5, atol=1e-6, err_msg=name)


def test_momentum_no_weight_decay_name_exempts_matching_parameters():
    # PaddleClas's FixMatch configs: Momentum with weight_decay 0.0005 and no_weight_decay_name "bn bias"
    layer = paddle.nn.Linear(2, 2)
    named = [("fc.weight", layer.weight), ("fc.bias", layer.bias)]
    before = {n: p.numpy().copy() for n, p in named}
    opt, _ = build_optimizer({"name": "Momentum", "momentum": 0.9, "weight_decay": 0.5, "no_weight_decay_name": "bias",
                              "lr": {"name": "Constant", "learning_rate": 0.1}}, named, 1, 1)
    layer(paddle.ones([1, 2])).sum().backward()
    grads = {n: p.grad.numpy().copy() for n, p in named}
    opt.step()
    np.testing.assert_allclose(layer.bias.numpy(), before["fc.bias"] - 0.1 * grads["fc.bias"], rtol=1e-6)
    np.testing.assert_allclose(layer.weight.numpy(), before["fc.weight"] - 0.1 * (grads["fc.weight"] +
                                                                                 0.5 * before["fc.weight"]), rtol=1e-6)


def test_lr_epochs_and_step_each_epoch_in_the_config_are_ignored_as_in_paddleclas(caplog):
    """PaddleClas's builder overwrites them (its SKD / WSL configs write step_each_epoch: 1)."""
    cfg = {"name": "MultiStepDecay", "learning_rate": 0.1, "milestones": [1], "gamma": 0.1, "step_each_epoch": 1,
           "epochs": 50}
    with caplog.at_level(logging.INFO, logger="ppfreeze"):
        schedule = build_lr_scheduler(cfg, epochs=2, step_each_epoch=3)
    rates = []
    for _ in range(6):
        rates.append(schedule.get_lr())
        schedule.step()
    np.testing.assert_allclose(rates, [0.1] * 3 + [0.01] * 3, rtol=1e-6)   # the decay after 3 steps, not 1
    assert "Optimizer.lr.step_each_epoch: 1 ignored" in caplog.text
