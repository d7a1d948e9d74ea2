"""The model zoo, iterated from the registry: PaddleClas key manifests, forward/backward, weight
round trips, freezing and export for every registered model (docs/contributing.md).

Costs are kept small: keys and shapes are checked for every model without initialising weights
(``paddle.LazyGuard``); forward/backward and round trips run for every model up to
``MAX_PARAMS`` parameters at ``min_input_size`` (or the fixed ``input_size``); freezing and export
run for the smallest model of each family (module). ``PPFREEZE_FULL_ZOO=1`` lifts the size cap.
"""
import glob
import json
import os

import numpy as np
import paddle
import pytest

from ppfreeze.arch import MODELS, build_model
from _scripts import load_deploy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST_DIR = os.path.join(ROOT, "tests", "manifests")
MAX_PARAMS = None if os.environ.get("PPFREEZE_FULL_ZOO") else 30_000_000
# registered names PaddleClas does not register (generic families taking a size argument, wrappers)
PPFREEZE_ONLY = {"RecModel", "PPLCNet", "DistillationModel"}


def _manifests():
    out = {}
    for path in sorted(glob.glob(os.path.join(MANIFEST_DIR, "*.json"))):
        with open(path) as f:
            data = json.load(f)
        for name, keys in data["models"].items():
            out[name] = (data["class_num"], keys, os.path.basename(path))
    return out


MANIFESTS = _manifests()
# models shipped in ppfreeze (tests may register stand-ins of their own)
ZOO = [n for n in MODELS.names() if n not in PPFREEZE_ONLY and MODELS.get(n).__module__.startswith("ppfreeze.")]


def _lazy(name, class_num=7):
    with paddle.LazyGuard():
        return build_model({"name": name, "class_num": class_num})


def _num_params(model):
    return sum(int(np.prod(p.shape)) for p in model.parameters())


SIZES = {}
for _name in ZOO:
    _m = _lazy(_name)
    SIZES[_name] = (_num_params(_m), type(_m).__module__, _m.input_size or _m.min_input_size)
SMALL = [n for n in ZOO if MAX_PARAMS is None or SIZES[n][0] <= MAX_PARAMS]
# the smallest model of each family (module)
FAMILY_REPS = sorted({min((n for n in ZOO if SIZES[n][1] == mod), key=lambda n: SIZES[n][0])
                      for mod in {v[1] for v in SIZES.values()}})


def _input(name, batch=2, seed=0):
    size = SIZES[name][2]
    rng = np.random.default_rng(seed)
    return paddle.to_tensor(rng.standard_normal((batch, 3, size, size)).astype("float32"))


def _logits(out):
    if isinstance(out, dict):
        return out["logits"]
    if isinstance(out, (list, tuple)):
        return out[0]
    return out


def _all_logits(out):
    """Every classifier output: GoogLeNet returns [logits, aux1, aux2], trained together."""
    return [_logits(o) for o in out] if isinstance(out, (list, tuple)) else [_logits(out)]


@pytest.mark.parametrize("name", ZOO)
def test_keys_and_shapes_match_paddleclas_manifest(name):
    assert name in MANIFESTS, f"{name} has no key manifest in tests/manifests (tools/dev/compare_with_paddleclas.py)"
    class_num, expected, source = MANIFESTS[name]
    model = _lazy(name, class_num)
    ours = [f"{k} {','.join(str(int(d)) for d in v.shape)}" for k, v in model.state_dict().items()]
    missing, extra = sorted(set(expected) - set(ours)), sorted(set(ours) - set(expected))
    assert not missing and not extra, f"{source}: missing {missing[:5]}, unexpected {extra[:5]}"
    assert ours == expected, f"{source}: same keys, other order"


@pytest.mark.parametrize("name", SMALL)
def test_forward_backward_and_weight_round_trip(name):
    paddle.seed(1)
    model = build_model({"name": name, "class_num": 5})
    x = _input(name)
    model.train()
    outs = _all_logits(model(x))
    assert all(out.shape == [2, 5] for out in outs)
    paddle.add_n([(out.astype("float32") ** 2).mean() for out in outs]).backward()
    trainable = [(n, p) for n, p in model.named_parameters() if not p.stop_gradient]
    no_grad = [n for n, p in trainable if p.grad is None]
    assert not no_grad, f"parameters without a gradient: {no_grad[:5]}"
    # a state_dict saved from a differently seeded twin loads with identical outputs
    paddle.seed(2)
    twin = build_model({"name": name, "class_num": 5})
    model.set_state_dict(twin.state_dict())
    model.eval(), twin.eval()
    with paddle.no_grad():
        a, b = _logits(model(x)).numpy(), _logits(twin(x)).numpy()
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", FAMILY_REPS)
def test_freeze_stages_2_keeps_frozen_tensors_bit_identical(name):
    from ppfreeze.freeze import build_freeze_plan
    from ppfreeze.optim import build_optimizer
    paddle.seed(3)
    model = build_model({"name": name, "class_num": 5})
    plan = build_freeze_plan({"stages": 2, "allow_random_frozen": True}, model)
    plan.apply(model, 1)
    frozen = plan.frozen_tensor_names(1)
    assert frozen, "Freeze.stages: 2 froze nothing"
    before = {k: v.numpy().copy() for k, v in model.state_dict().items() if k in set(frozen)}
    opt, _ = build_optimizer({"name": "Momentum", "momentum": 0.9, "lr": {"name": "Cosine", "learning_rate": 0.1},
                              "regularizer": {"name": "L2", "coeff": 1e-4}}, plan.optimizer_parameters(model), 1, 2)
    model.train()
    for step in range(2):
        loss = (_logits(model(_input(name, seed=step))) ** 2).mean()
        loss.backward()
        plan.after_backward(model)
        opt.step()
        opt.clear_grad(set_to_zero=False)
    after = model.state_dict()
    changed = [k for k, v in before.items() if not np.array_equal(v, after[k].numpy())]
    assert not changed, f"frozen tensors changed: {changed[:5]}"


@pytest.mark.parametrize("name", FAMILY_REPS)
def test_export_and_inference_agree_with_dygraph(name, tmp_path):
    from paddle.static import InputSpec
    predictor_mod = load_deploy("predictor")
    paddle.seed(4)
    model = build_model({"name": name, "class_num": 5})
    model.eval()
    x = _input(name, batch=1)
    with paddle.no_grad():
        expected = _logits(model(x)).numpy()
    deploy = model.export_model()
    deploy.eval()
    size = SIZES[name][2]
    static = paddle.jit.to_static(deploy, input_spec=[InputSpec([None, 3, size, size], "float32", "x")],
                                  full_graph=True)
    paddle.jit.save(static, str(tmp_path / "inference"))
    got = predictor_mod.Predictor(str(tmp_path), enable_mkldnn=False).run(x.numpy())
    got = got[0] if isinstance(got, (list, tuple)) else got
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-3)
