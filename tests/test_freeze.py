"""Freeze section: every method keeps frozen tensors bit-identical; plan, schedule, report, audit."""
import json
import logging
import os
import sys

import numpy as np
import paddle
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from _tiny_model import tiny_model  # noqa: E402

from ppfreeze.config.errors import ConfigError  # noqa: E402
from ppfreeze.freeze import FreezeAudit, FrozenTensorChanged, build_freeze_plan, format_report, write_report  # noqa: E402

IMAGE = [3, 16, 16]
PREFIX = ["stem.", "blocks.0.", "blocks.1."]  # stem + stage1
METHODS = ["lr_zero", "stop_gradient", "cut", "clear_grad"]
OPTIMIZERS = ["sgd", "momentum_l2", "adam", "adamw"]


def make_optimizer(kind, params):
    if kind == "sgd":
        return paddle.optimizer.SGD(learning_rate=0.1, parameters=params)
    if kind == "momentum_l2":
        return paddle.optimizer.Momentum(learning_rate=0.1, momentum=0.9, parameters=params,
                                         weight_decay=paddle.regularizer.L2Decay(1e-4))
    if kind == "adam":
        return paddle.optimizer.Adam(learning_rate=0.01, parameters=params)
    return paddle.optimizer.AdamW(learning_rate=0.01, parameters=params, weight_decay=0.05)


def batches(n=3, seed=1):
    rng = np.random.RandomState(seed)
    return [(paddle.to_tensor(rng.randn(4, *IMAGE).astype("float32")),
             paddle.to_tensor(rng.randint(0, 10, (4,)).astype("int64"))) for _ in range(n)]


def train(model, optimizer, after_backward, steps=3):
    model.train()
    for x, y in batches(steps):
        loss = paddle.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        after_backward()
        optimizer.step()
        optimizer.clear_grad()


def snapshot(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def in_prefix(name):
    return any(name.startswith(p) for p in PREFIX)


def frozen_plan(method, model, **extra):
    plan = build_freeze_plan({"until": "stage1", "method": method, **extra}, model)
    plan.apply(model)
    return plan


# -- integrity: every method x optimizer ---------------------------------------------------------
@pytest.mark.parametrize("optimizer_kind", OPTIMIZERS)
@pytest.mark.parametrize("method", METHODS)
def test_frozen_tensors_bit_identical(method, optimizer_kind):
    model = tiny_model()
    plan = frozen_plan(method, model)
    audit = FreezeAudit(model, plan)
    audit.snapshot()
    before = snapshot(model)
    optimizer = make_optimizer(optimizer_kind, [p for _, p in plan.optimizer_parameters(model)])
    train(model, optimizer, lambda: plan.after_backward(model))
    after = snapshot(model)
    for key in before:
        if in_prefix(key):  # frozen parameters and frozen BN statistics (bn: frozen)
            assert np.array_equal(before[key], after[key]), f"{method}/{optimizer_kind}: {key} changed"
    for key in ("blocks.2.conv.weight", "blocks.2.bn.weight", "blocks.2.bn._mean", "fc.weight"):
        assert not np.array_equal(before[key], after[key]), f"{method}/{optimizer_kind}: {key} did not train"
    audit.check("epoch 1 step 3")
    assert audit.summary().startswith(f"frozen tensors unchanged: {len(audit.names)} tensors, hash ")
    assert len(audit.names) == 9 + 6  # 9 frozen parameters + mean/variance of 3 BN layers


def test_optimizer_membership_per_method():
    for method, expect_frozen_in_opt in [("lr_zero", True), ("clear_grad", True), ("stop_gradient", False),
                                         ("cut", False)]:
        model = tiny_model()
        plan = frozen_plan(method, model)
        names = {n for n, _ in plan.optimizer_parameters(model)}
        assert ("stem.0.conv.weight" in names) == expect_frozen_in_opt, method
        assert {"blocks.2.conv.weight", "fc.weight", "fc.bias"} <= names
        assert not any(n.endswith(("._mean", "._variance")) for n in names)
        stop = dict(model.named_parameters())["stem.0.conv.weight"].stop_gradient
        assert stop == (not expect_frozen_in_opt), method


@pytest.mark.parametrize("optimizer_kind", ["momentum_l2", "adamw"])
def test_zeroed_gradient_leaks_but_cleared_to_none_does_not(optimizer_kind):
    model = tiny_model()
    plan = frozen_plan("clear_grad", model)
    audit = FreezeAudit(model, plan)
    audit.snapshot()
    optimizer = make_optimizer(optimizer_kind, [p for _, p in plan.optimizer_parameters(model)])
    frozen = [p for n, p in model.named_parameters() if n in plan.current.frozen_names()]

    def unsafe_clear():  # the default clear_gradient() zeroes instead of clearing
        for p in frozen:
            p.clear_gradient()

    train(model, optimizer, unsafe_clear)
    with pytest.raises(FrozenTensorChanged) as info:
        audit.check("epoch 1 step 3")
    assert info.value.name.startswith(("stem.", "blocks.0.", "blocks.1.")) and info.value.max_abs_diff > 0
    assert "epoch 1 step 3" in str(info.value)


def test_after_backward_clears_to_none_not_zero():
    model = tiny_model()
    plan = frozen_plan("clear_grad", model)
    x, y = batches(1)[0]
    paddle.nn.functional.cross_entropy(model(x), y).backward()
    params = dict(model.named_parameters())
    assert params["stem.0.conv.weight"].grad is not None
    plan.after_backward(model)
    assert all(params[n].grad is None for n in plan.current.frozen_names())
    assert params["fc.weight"].grad is not None
    # The trap after_backward avoids: Paddle 3.3 ignores the keyword and zeroes the gradient.
    paddle.nn.functional.cross_entropy(model(x), y).backward()
    params["fc.weight"].clear_gradient(set_to_zero=False)
    assert params["fc.weight"].grad is not None


def test_lr_zero_equals_explicit_param_attr():
    for kind in ("momentum_l2", "adamw"):
        ours = tiny_model(seed=3)
        plan = build_freeze_plan({"rules": [{"select": ["stem"], "method": "lr_zero", "bn": "freeze_affine"}]}, ours)
        plan.apply(ours)
        reference = tiny_model(seed=3, frozen_attr_prefix="stem")  # ParamAttr(learning_rate=0.0) on stem
        assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(ours.parameters(), reference.parameters()))
        train(ours, make_optimizer(kind, [p for _, p in plan.optimizer_parameters(ours)]),
              lambda: plan.after_backward(ours))
        train(reference, make_optimizer(kind, reference.parameters()), lambda: None)
        a, b = snapshot(ours), snapshot(reference)
        assert a.keys() == b.keys()
        for key in a:
            assert np.array_equal(a[key], b[key]), f"{kind}: {key} differs from ParamAttr(learning_rate=0)"
        assert not np.array_equal(a["fc.weight"], snapshot(tiny_model(seed=3))["fc.weight"])


# -- cut and auto ----------------------------------------------------------------------------------
def test_cut_detaches_boundary_and_frozen_params_get_no_grad():
    model = tiny_model()
    plan = frozen_plan("cut", model)
    assert plan.current.cut_boundary == "blocks.1"
    seen = {}
    model.blocks[2].register_forward_pre_hook(lambda layer, inputs: seen.update(sg=inputs[0].stop_gradient))
    x, y = batches(1)[0]
    x.stop_gradient = False  # even an input that wants a gradient is cut at the boundary
    paddle.nn.functional.cross_entropy(model(x), y).backward()
    assert seen["sg"] is True
    assert x.grad is None
    params = dict(model.named_parameters())
    for name in plan.current.frozen_names():
        assert params[name].grad is None, name
    assert params["blocks.2.conv.weight"].grad is not None and params["fc.weight"].grad is not None


def test_apply_is_idempotent_one_hook():
    model = tiny_model()
    plan = frozen_plan("cut", model)
    plan.apply(model)
    plan.apply(model)
    assert len(model.blocks[1]._forward_post_hooks) == 1
    plan.restore(model)
    assert len(model.blocks[1]._forward_post_hooks) == 0
    assert not any(p.stop_gradient for n, p in model.named_parameters() if not n.endswith(("_mean", "_variance")))


def test_auto_picks_cut_for_a_prefix():
    model = tiny_model()
    plan = frozen_plan("auto", model)
    assert plan.current.cut_boundary == "blocks.1"
    assert {p.method for p in plan.params if p.frozen} == {"cut"}


def test_auto_warns_and_falls_back_when_bn_freeze_stats(caplog):
    model = tiny_model()
    with caplog.at_level(logging.WARNING, logger="ppfreeze"):
        plan = frozen_plan("auto", model, bn="freeze_stats")
    assert plan.current.cut_boundary is None
    assert {p.method for p in plan.params if p.frozen} == {"stop_gradient"}
    assert not plan.current.params["stem.0.bn.weight"].frozen  # freeze_stats leaves BN affine trainable
    text = caplog.text
    assert "cannot cut" in text and "freeze_stats" in text and "backward pass still runs" in text


def test_explicit_cut_that_cannot_cut_is_an_error():
    with pytest.raises(ConfigError) as info:
        build_freeze_plan({"until": "stage1", "method": "cut", "bn": "freeze_stats"}, tiny_model())
    assert info.value.key == "Freeze.method" and "freeze_stats" in str(info.value)
    with pytest.raises(ConfigError) as info:
        build_freeze_plan({"rules": [{"select": ["blocks.1"], "method": "cut"}]}, tiny_model())
    assert info.value.key == "Freeze.rules.0.method" and "stem.0.conv.weight" in str(info.value)


# -- BN policies -----------------------------------------------------------------------------------
def test_freeze_stats_survives_model_train():
    model = tiny_model()
    plan = frozen_plan("auto", model, bn="freeze_stats")
    model.eval()
    model.train()  # a parent's train() must not undo the policy
    assert model.stem[0].bn._use_global_stats is True and model.stem[0].bn.training
    before = snapshot(model)
    train(model, paddle.optimizer.SGD(0.1, parameters=[p for _, p in plan.optimizer_parameters(model)]),
          lambda: None)
    after = snapshot(model)
    for layer in ("stem.0.bn", "blocks.0.bn", "blocks.1.bn"):
        for stat in ("_mean", "_variance"):
            assert np.array_equal(before[f"{layer}.{stat}"], after[f"{layer}.{stat}"])
        assert not np.array_equal(before[f"{layer}.weight"], after[f"{layer}.weight"])  # affine trains
    assert not np.array_equal(before["blocks.2.bn._mean"], after["blocks.2.bn._mean"])
    assert np.array_equal(before["stem.0.conv.weight"], after["stem.0.conv.weight"])


def test_freeze_affine_lets_stats_move_and_restore_resets_flag():
    model = tiny_model()
    plan = frozen_plan("stop_gradient", model, bn="freeze_affine")
    assert plan.current.params["stem.0.bn.weight"].frozen
    before = snapshot(model)
    train(model, paddle.optimizer.SGD(0.1, parameters=[p for _, p in plan.optimizer_parameters(model)]),
          lambda: None)
    after = snapshot(model)
    assert not np.array_equal(before["stem.0.bn._mean"], after["stem.0.bn._mean"])
    assert np.array_equal(before["stem.0.bn.weight"], after["stem.0.bn.weight"])
    frozen_plan("auto", model)  # default bn: frozen sets use_global_stats ...
    assert model.stem[0].bn._use_global_stats is True
    plan.apply(model)  # ... and re-applying freeze_affine restores the model's own value
    assert model.stem[0].bn._use_global_stats is None


# -- shortcuts, rules, strict ----------------------------------------------------------------------
def frozen_set(cfg):
    return set(build_freeze_plan(cfg, tiny_model()).current.frozen_names())


def params_under(*prefixes):
    return {n for n in tiny_model().state_dict() if n.startswith(prefixes) and not n.endswith(("_mean", "_variance"))}


def test_until_by_stage_and_by_sublayer():
    assert frozen_set({"until": "stage1"}) == params_under("stem.", "blocks.0.", "blocks.1.")
    assert frozen_set({"until": "blocks.0"}) == params_under("stem.", "blocks.0.")
    assert frozen_set({"until": "stem"}) == params_under("stem.")
    plan = build_freeze_plan({"until": "blocks.1.conv"}, tiny_model())  # inside a unit: registration order
    assert set(plan.current.frozen_names()) == params_under("stem.", "blocks.0.") | {"blocks.1.conv.weight"}
    assert plan.current.cut_boundary == "blocks.0"
    assert plan.current.params["blocks.1.conv.weight"].method == "stop_gradient"
    with pytest.raises(ConfigError) as info:
        build_freeze_plan({"until": "stage3"}, tiny_model())
    assert info.value.key == "Freeze.until" and "Did you mean" in str(info.value) and "stage1" in str(info.value)


def test_stages_shortcut():
    assert frozen_set({"stages": 0}) == params_under("stem.")
    assert frozen_set({"stages": 1}) == params_under("stem.", "blocks.0.", "blocks.1.")
    assert frozen_set({"stages": 2}) == params_under("stem.", "blocks.")
    with pytest.raises(ConfigError) as info:
        build_freeze_plan({"stages": 3}, tiny_model())
    assert info.value.key == "Freeze.stages" and "2 stages" in str(info.value)
    with pytest.raises(ConfigError) as info:
        build_freeze_plan({"stages": 1, "until": "stage1"}, tiny_model())
    assert info.value.key == "Freeze.until"


def test_rules_select_exclude_types():
    assert frozen_set({"rules": [{"select": ["blocks.*"], "exclude": ["*.bn.*"]}]}) == \
        {"blocks.0.conv.weight", "blocks.1.conv.weight", "blocks.2.conv.weight"}
    assert frozen_set({"rules": [{"select": ["stage2", "fc"]}]}) == params_under("blocks.2.", "fc.")
    plan = build_freeze_plan({"rules": [{"types": ["BatchNorm2D"], "bn": "freeze_stats"}]}, tiny_model())
    assert plan.current.frozen_names() == []
    assert set(plan.current.stats_frozen_layers()) == {"stem.0.bn", "blocks.0.bn", "blocks.1.bn", "blocks.2.bn"}


def test_strict_rule_matching_nothing_lists_close_names():
    with pytest.raises(ConfigError) as info:
        build_freeze_plan({"rules": [{"select": ["stem"]}, {"select": ["block.1"]}]}, tiny_model())
    assert info.value.key.startswith("Freeze.rules.1.select")
    assert "'block.1'" in str(info.value) and "Did you mean" in str(info.value) and "blocks.1" in str(info.value)
    with pytest.raises(ConfigError) as info:
        build_freeze_plan({"rules": [{"select": ["stem"], "types": ["BatchNorm2d"]}]}, tiny_model())
    assert info.value.key == "Freeze.rules.0.types.0" and "BatchNorm2D" in str(info.value)
    with pytest.raises(ConfigError) as info:
        build_freeze_plan({"lr_mult": {"head.*": 0.1}}, tiny_model())
    assert info.value.key == "Freeze.lr_mult.head.*"
    # strict: false ignores the empty pattern
    assert frozen_set({"strict": False, "rules": [{"select": ["stem", "block.1"]}]}) == params_under("stem.")


def test_strict_conflicting_rules():
    cfg = {"rules": [{"select": ["stem"], "method": "stop_gradient"},
                     {"select": ["stem.0.conv"], "method": "lr_zero"}]}
    with pytest.raises(ConfigError) as info:
        build_freeze_plan(cfg, tiny_model())
    assert info.value.key == "Freeze.rules.1"
    assert "Freeze.rules.0" in str(info.value) and "stem.0.conv.weight" in str(info.value)
    bn_cfg = {"until": "stem", "rules": [{"select": ["stem.0.bn"], "bn": "freeze_stats"}]}
    with pytest.raises(ConfigError) as info:
        build_freeze_plan(bn_cfg, tiny_model())
    assert "stem.0.bn" in str(info.value) and "Freeze.until" in str(info.value)
    plan = build_freeze_plan({**cfg, "strict": False}, tiny_model())  # later rule wins
    assert plan.current.params["stem.0.conv.weight"].method == "lr_zero"
    # agreeing rules are fine
    build_freeze_plan({"rules": [{"select": ["stem"]}, {"select": ["stem.0.conv"]}]}, tiny_model())


def test_config_value_errors():
    cases = [({"untill": "stage1"}, "Freeze.untill", "until"),
             ({"method": "freeze"}, "Freeze.method", "stop_gradient"),
             ({"bn": "fixed"}, "Freeze.bn", "freeze_stats"),
             ({"rules": [{"selct": ["stem"]}]}, "Freeze.rules.0.selct", "select"),
             ({"rules": [{"exclude": ["fc"]}]}, "Freeze.rules.0.select", "missing"),
             ({"lr_mult": {"fc": -1}}, "Freeze.lr_mult.fc", ">= 0"),
             ({"layer_decay": 1.5}, "Freeze.layer_decay", "(0, 1]"),
             ({"schedule": [{"epoch": 0, "unfreeze": ["stem"]}]}, "Freeze.schedule.0.epoch", "1-based"),
             ({"until": "stem", "schedule": [{"epoch": 2, "unfreeze": ["fc"]}]}, "Freeze.schedule.0.unfreeze",
              "nothing"),
             ({"verify": "sometimes"}, "Freeze.verify", "never"),
             ({"cache_features": "yes"}, "Freeze.cache_features", "auto"),
             ([1, 2], "Freeze", "mapping")]
    for cfg, key, fragment in cases:
        with pytest.raises(ConfigError) as info:
            build_freeze_plan(cfg, tiny_model())
        assert info.value.key == key, (cfg, info.value.key)
        assert fragment in str(info.value), (cfg, str(info.value))


def test_empty_config_freezes_nothing():
    for cfg in (None, {}):
        model = tiny_model()
        plan = build_freeze_plan(cfg, model)
        plan.apply(model)
        assert plan.current.frozen_names() == [] and plan.current.cut_boundary is None
        trainable = [n for n, p in model.named_parameters() if not p.stop_gradient]
        assert [n for n, _ in plan.optimizer_parameters(model)] == trainable
        assert plan.report(model, IMAGE)["params"]["frozen"] == 0


# -- learning rates --------------------------------------------------------------------------------
def test_lr_mult_longest_match_and_no_compounding():
    model = tiny_model()
    plan = build_freeze_plan({"lr_mult": {"blocks.*": 0.1, "blocks.2.*": 0.5, "fc": 2}}, model)
    for _ in range(3):
        plan.apply(model)
    lr = {n: p.optimize_attr["learning_rate"] for n, p in model.named_parameters()}
    assert lr["blocks.0.conv.weight"] == pytest.approx(0.1) and lr["blocks.1.bn.bias"] == pytest.approx(0.1)
    assert lr["blocks.2.conv.weight"] == pytest.approx(0.5) and lr["fc.weight"] == pytest.approx(2.0)
    assert lr["stem.0.conv.weight"] == 1.0


def test_layer_decay_from_head_down():
    model = tiny_model()
    plan = build_freeze_plan({"layer_decay": 0.5}, model)
    plan.apply(model)
    lr = {n: p.optimize_attr["learning_rate"] for n, p in model.named_parameters()}
    expected = {"fc.weight": 1.0, "blocks.2.conv.weight": 0.5, "blocks.1.bn.weight": 0.25,
                "blocks.0.conv.weight": 0.125, "stem.0.conv.weight": 0.0625}
    for name, value in expected.items():
        assert lr[name] == pytest.approx(value), name


# -- schedule and checkpoints ----------------------------------------------------------------------
SCHEDULE = {"until": "stage2", "schedule": [{"epoch": 3, "unfreeze": ["stage2"], "lr_mult": 0.1},
                                            {"epoch": 5, "unfreeze": ["blocks.1"], "lr_mult": 0.01,
                                             "bn": "freeze_stats"}]}


def flags(model):
    return {n: (p.stop_gradient, p.optimize_attr["learning_rate"]) for n, p in model.named_parameters()}


def test_schedule_state_before_at_after_milestone():
    model = tiny_model()
    plan = build_freeze_plan(SCHEDULE, model)
    assert [e for e in range(1, 8) if plan.milestone_at(e)] == [3, 5]
    plan.apply(model, 2)
    assert dict(model.named_parameters())["blocks.2.conv.weight"].stop_gradient
    assert plan.current.cut_boundary == "blocks.2"
    plan.apply(model, 3)
    params = dict(model.named_parameters())
    assert not params["blocks.2.conv.weight"].stop_gradient
    assert params["blocks.2.conv.weight"].optimize_attr["learning_rate"] == pytest.approx(0.1)
    assert plan.current.cut_boundary == "blocks.1" and len(model.blocks[2]._forward_post_hooks) == 0
    plan.apply(model, 6)
    assert params["blocks.1.conv.weight"].optimize_attr["learning_rate"] == pytest.approx(0.01)
    assert plan.current.bn["blocks.1.bn"] == "freeze_stats" and model.blocks[1].bn._use_global_stats is True
    assert plan.current.cut_boundary == "blocks.0"
    assert set(plan.unfrozen_later()) == params_under("blocks.1.", "blocks.2.")  # freeze_stats: BN affine trains
    # any epoch reproduces from scratch, in any order (resume before/at/after a milestone)
    for epoch in (1, 2, 3, 4, 5, 6):
        fresh = tiny_model()
        fresh_plan = build_freeze_plan(SCHEDULE, fresh)
        fresh_plan.apply(fresh, epoch)
        plan.apply(model, epoch)
        assert flags(fresh) == flags(model), epoch
        assert fresh_plan.current.cut_boundary == plan.current.cut_boundary


def test_schedule_unfreeze_then_train_updates_the_unfrozen():
    model = tiny_model()
    plan = build_freeze_plan(SCHEDULE, model)
    plan.apply(model, 3)  # engine rebuilds the optimizer at a milestone
    before = snapshot(model)
    train(model, paddle.optimizer.Momentum(0.1, parameters=[p for _, p in plan.optimizer_parameters(model)]),
          lambda: plan.after_backward(model), steps=2)
    after = snapshot(model)
    assert not np.array_equal(before["blocks.2.conv.weight"], after["blocks.2.conv.weight"])
    assert np.array_equal(before["blocks.1.conv.weight"], after["blocks.1.conv.weight"])


def test_state_dict_round_trip_and_mismatch():
    model = tiny_model()
    plan = build_freeze_plan(SCHEDULE, model)
    plan.apply(model, 4)
    state = plan.state_dict()
    assert state["epoch"] == 4 and "blocks.1.conv.weight" in state["frozen"]
    json.dumps(state)
    resumed = build_freeze_plan(SCHEDULE, tiny_model())
    assert resumed.set_state_dict(state) == 4
    assert resumed.current.frozen_names() == plan.current.frozen_names()
    other = build_freeze_plan({"until": "stage1"}, tiny_model())
    with pytest.raises(ConfigError) as info:
        other.set_state_dict(state)
    assert info.value.key == "Freeze" and "different Freeze plan" in str(info.value)


def test_pretrained_guard():
    model = tiny_model()
    plan = build_freeze_plan({"until": "stage1"}, model)
    keys = set(model.state_dict())
    assert plan.check_pretrained(keys) == []
    assert plan.check_pretrained(keys - {"fc.weight"}) == []  # trainable: fine to start random
    with pytest.raises(ConfigError) as info:
        plan.check_pretrained(keys - {"stem.0.conv.weight", "blocks.0.bn._mean"})
    assert info.value.key == "Freeze.allow_random_frozen"
    assert "stem.0.conv.weight" in str(info.value) and "blocks.0.bn._mean" in str(info.value)
    assert plan.check_pretrained(keys - {"stem.0.conv.weight"}, allow_random_frozen=True) == ["stem.0.conv.weight"]
    allowing = build_freeze_plan({"until": "stage1", "allow_random_frozen": True}, tiny_model())
    assert allowing.check_pretrained(keys - {"stem.0.conv.weight"}) == ["stem.0.conv.weight"]


# -- report and audit ------------------------------------------------------------------------------
def test_report_counts_and_flops_share(tmp_path):
    model = tiny_model()
    plan = build_freeze_plan({"stages": 1}, model)
    plan.apply(model)
    report = plan.report(model, IMAGE)
    # Conv MACs = out elements x (in channels x 3 x 3); 16 px input, max_pool halves, blocks.1 stride 2.
    stem, b0, b1, b2, fc = 8 * 16 * 16 * 3 * 9, 8 * 8 * 8 * 8 * 9, 16 * 4 * 4 * 8 * 9, 16 * 4 * 4 * 16 * 9, 16 * 10
    total = stem + b0 + b1 + b2 + fc
    assert report["flops"]["macs_total"] == total
    assert report["flops"]["frozen_share"] == pytest.approx((stem + b0 + b1) / total)
    assert report["flops"]["no_backward_share"] == pytest.approx((stem + b0 + b1) / total)
    frozen = (8 * 3 * 9 + 16) + (8 * 8 * 9 + 16) + (16 * 8 * 9 + 32)
    trainable = (16 * 16 * 9 + 32) + (16 * 10 + 10)
    assert report["params"]["frozen"] == frozen and report["params"]["trainable"] == trainable
    assert report["params"]["frozen_share"] == pytest.approx(frozen / (frozen + trainable))
    assert report["params"]["tensors_frozen"] == 9
    rule = report["rules"][0]
    assert rule["key"] == "Freeze.stages" and rule["num_params"] == 9 and rule["method_used"] == {"cut": 9}
    assert rule["bn_layers"] == ["stem.0.bn", "blocks.0.bn", "blocks.1.bn"]
    assert report["method"]["cut_boundary"] == "blocks.1"
    text = format_report(report)
    assert f"{(stem + b0 + b1) / total:.1%} frozen" in text and "cut: 9" in text and "cached per image" in text
    write_report(report, str(tmp_path / "freeze_report.json"))
    assert json.load(open(tmp_path / "freeze_report.json"))["params"]["frozen"] == frozen
    # the report leaves train/eval flags and BN statistics alone
    assert model.training and model.blocks[2].bn.training


def test_audit_detects_modification_and_names_tensor():
    model = tiny_model()
    plan = frozen_plan("cut", model)
    audit = FreezeAudit(model, plan)
    audit.snapshot()
    audit.check("start")
    weight = dict(model.named_parameters())["blocks.0.conv.weight"]
    weight.set_value(weight.numpy() + 0.5)
    with pytest.raises(FrozenTensorChanged) as info:
        audit.check("epoch 2 step 37")
    assert info.value.name == "blocks.0.conv.weight" and "epoch 2 step 37" in str(info.value)
    assert info.value.max_abs_diff == pytest.approx(0.5)
    audit.snapshot()
    model.stem[0].bn._mean.set_value(model.stem[0].bn._mean.numpy() + 1.0)
    with pytest.raises(FrozenTensorChanged) as info:
        audit.check("epoch 3 end")
    assert info.value.name == "stem.0.bn._mean"


def test_audit_should_check_follows_verify():
    def audit_for(verify):
        model = tiny_model()
        audit = FreezeAudit(model, frozen_plan("auto", model, verify=verify))
        audit.snapshot()
        return audit

    never, end, epoch, every = audit_for("never"), audit_for("end"), audit_for("epoch"), audit_for(10)
    assert not never.should_check(10, True, True)
    assert end.should_check(3, False, True) and not end.should_check(3, True, False)
    assert epoch.should_check(3, True, False) and not epoch.should_check(3, False, False)
    assert every.should_check(20, False, False) and not every.should_check(21, True, False)


def test_frozen_gradients_do_not_count_in_global_norm_clipping():
    """lr_zero / clear_grad compute gradients for frozen params; they must not scale the clip of
    trainable ones (stop_gradient frozen params have no gradient at all: the reference)."""
    import numpy as np
    import paddle
    from _tiny_model import TinyNet
    from ppfreeze.freeze import build_freeze_plan

    def fc_update(method):
        paddle.seed(3)
        model = TinyNet()
        plan = build_freeze_plan({"until": "stage2", "method": method}, model)
        plan.apply(model, 1)
        opt = paddle.optimizer.SGD(learning_rate=0.1, parameters=[p for _, p in plan.optimizer_parameters(model)],
                                   grad_clip=paddle.nn.ClipGradByGlobalNorm(1e-3))
        before = model.fc.weight.numpy().copy()
        x = paddle.to_tensor(np.random.RandomState(0).rand(4, 3, 16, 16).astype("float32"))
        model(x).sum().backward()
        plan.after_backward(model)
        opt.step()
        return model.fc.weight.numpy() - before

    reference = fc_update("stop_gradient")
    assert np.abs(reference).max() > 0
    for method in ("lr_zero", "clear_grad"):
        np.testing.assert_allclose(fc_update(method), reference, rtol=1e-5, atol=1e-9, err_msg=method)


def test_cache_features_true_is_refused():
    import pytest
    from ppfreeze.config import ConfigError
    from ppfreeze.freeze import parse_freeze_spec
    with pytest.raises(ConfigError, match="not a mode"):
        parse_freeze_spec({"until": "stage1", "cache_features": True}, "Freeze")
    assert parse_freeze_spec({"until": "stage1", "cache_features": False}, "Freeze").cache_features is False


def test_feature_cache_switches_itself_off_when_replay_does_not_match():
    import numpy as np
    import paddle
    from _tiny_model import TinyNet
    from ppfreeze.freeze import build_freeze_plan
    from ppfreeze.freeze.cache import FeatureCache

    paddle.seed(0)
    model = TinyNet()
    plan = build_freeze_plan({"until": "stage1", "allow_random_frozen": True}, model)
    plan.apply(model, 1)
    cache = FeatureCache(model, plan)
    x = paddle.to_tensor(np.random.RandomState(0).rand(2, 3, 16, 16).astype("float32"))
    idx = paddle.to_tensor(np.array([0, 1]))
    model.train()
    first = cache.forward(lambda: model(x), idx)           # records
    assert sorted(cache.store) == [0, 1] and not cache.verified
    assert np.array_equal(cache.forward(lambda: model(x), idx).numpy(), first.numpy()) and cache.verified
    cache.store[0] = cache.store[0] + 1.0                   # a stale entry: the replay now disagrees
    cache.verified = False
    out = cache.forward(lambda: model(x), idx)
    assert not cache.enabled and not cache.store            # off, memory released
    assert np.array_equal(out.numpy(), first.numpy())       # the step still used the real forward
    assert cache.forward(lambda: model(x), idx) is not None and not cache.store  # and records nothing more


def test_cache_features_rejects_non_modes():
    import pytest
    from ppfreeze.config import ConfigError
    from ppfreeze.freeze import parse_freeze_spec
    for bad in (0.0, 1.0, "yes"):
        with pytest.raises(ConfigError, match="cache_features"):
            parse_freeze_spec({"until": "stage1", "cache_features": bad}, "Freeze")


def test_feature_cache_turns_off_for_a_boundary_with_several_outputs():
    """HRNet's stages pass a list of branches on: nothing to record, training goes on uncached."""
    import numpy as np
    import paddle
    from ppfreeze.arch import build_model
    from ppfreeze.freeze import build_freeze_plan
    from ppfreeze.freeze.cache import FeatureCache

    paddle.seed(0)
    model = build_model({"name": "HRNet_W18_C", "class_num": 3})
    plan = build_freeze_plan({"until": "stage2", "allow_random_frozen": True}, model)
    plan.apply(model, 1)
    assert plan.current.cut_boundary == "st2"
    cache = FeatureCache(model, plan)
    x = paddle.to_tensor(np.random.RandomState(0).rand(2, 3, 32, 32).astype("float32"))
    idx = paddle.to_tensor(np.array([0, 1]))
    model.train()
    out = cache.forward(lambda: model(x), idx)
    assert out.shape == [2, 3] and not cache.enabled and not cache.store
    out.mean().backward()  # the cut list output still trains the rest
    assert model.fc.weight.grad is not None
    assert all(p.grad is None for p in model.conv_tr1_1.parameters())


def test_feature_cache_replays_a_model_with_several_outputs():
    """GoogLeNet returns [logits, aux1, aux2]; frozen up to stage1 its replay is exact."""
    import numpy as np
    import paddle
    from ppfreeze.arch import build_model
    from ppfreeze.freeze import build_freeze_plan
    from ppfreeze.freeze.cache import FeatureCache

    paddle.seed(0)
    model = build_model({"name": "GoogLeNet", "class_num": 3})
    plan = build_freeze_plan({"until": "stage1", "allow_random_frozen": True}, model)
    plan.apply(model, 1)
    cache = FeatureCache(model, plan)
    x = paddle.to_tensor(np.random.RandomState(0).rand(1, 3, 224, 224).astype("float32"))
    idx = paddle.to_tensor(np.array([0]))
    model.eval()  # dropout off: the verification compares outputs bit for bit
    with paddle.no_grad():
        first = cache.forward(lambda: model(x), idx)
        again = cache.forward(lambda: model(x), idx)
    assert cache.enabled and cache.verified
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(first, again))
