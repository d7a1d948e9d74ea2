"""Compare ppfreeze's distillation losses and DistillationModel with PaddleClas's code on the same inputs.

DistillationModel: PaddleClas's and ours, built from the same ``Arch`` (ResNet34 teacher,
ResNet18 / PPLCNet_x1_0 students), must have the same state-dict keys and shapes in the same
order, and give the same outputs once PaddleClas's weights are loaded into ours.

For each loss (with the arguments PaddleClas's configs use): the value, and the gradients with
respect to the student's and the teacher's outputs (DML trains both, so both gradients matter).
``DistillationPairLoss`` (MGD, PEFD) also: the loss's own state-dict keys and shapes, and the
gradients of its parameters, with PaddleClas's initial parameters copied into ours and the same
seed before each call (MGD draws a random channel mask).
PaddleClas returns one dict entry per pair; their sum is compared with ppfreeze's scalar.

    /work/pcenv/bin/python tools/dev/compare_distillation_losses.py --paddleclas /work/pc

PaddleClas is imported from --paddleclas only here; nothing of it is copied into ppfreeze.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)

N, C, D = 6, 10, 16
# (loss name, kwargs, input kind): kinds: logits (class ids as labels), multilabel ([N, 2, C] targets),
# features (RecModel-style dict outputs compared under key)
CASES = [
    ("DistillationCELoss", {"model_name_pairs": [["Student", "Teacher"]]}, "logits"),
    ("DistillationGTCELoss", {"model_names": ["Student", "Teacher"]}, "logits"),
    ("DistillationGTCELoss", {"model_names": ["Student"], "epsilon": 0.1}, "logits"),
    ("DistillationDMLLoss", {"model_name_pairs": [["Student", "Teacher"]]}, "logits"),
    ("DistillationDMLLoss", {"model_name_pairs": [["Student", "Teacher"]], "key": "logits"}, "features"),
    ("DistillationDMLLoss", {"model_name_pairs": [["Student", "Teacher"]], "weight_ratio": True,
                             "sum_across_class_dim": False}, "multilabel"),
    ("DistillationDMLLoss", {"model_name_pairs": [["Student", "Teacher"]], "act": "sigmoid",
                             "sum_across_class_dim": True}, "logits"),
    ("DistillationKLDivLoss", {"model_name_pairs": [["Student", "Teacher"]], "temperature": 4}, "logits"),
    ("DistillationDKDLoss", {"model_name_pairs": [["Student", "Teacher"]], "temperature": 1, "alpha": 1.0,
                             "beta": 1.0}, "logits"),
    ("DistillationDKDLoss", {"model_name_pairs": [["Student", "Teacher"]], "temperature": 4, "alpha": 1.0,
                             "beta": 8.0}, "logits"),
    ("DistillationWSLLoss", {"model_name_pairs": [["Student", "Teacher"]], "temperature": 2}, "logits"),
    ("DistillationSKDLoss", {"model_name_pairs": [["Student", "Teacher"]], "temperature": 1.0, "multiplier": 2.0,
                             "alpha": 0.9}, "logits"),
    ("DistillationDISTLoss", {"model_name_pairs": [["Student", "Teacher"]]}, "logits"),
    ("DistillationDistanceLoss", {"model_name_pairs": [["Student", "Teacher"]], "key": "backbone"}, "features"),
    ("DistillationDistanceLoss", {"model_name_pairs": [["Student", "Teacher"]], "mode": "l1", "act": "softmax"},
     "logits"),
    ("DistillationMultiLabelLoss", {"model_names": ["Student"], "weight_ratio": True, "size_sum": True},
     "multilabel"),
]


def inputs(kind: str, seed: int):
    rng = np.random.default_rng(seed)
    s, t = rng.normal(0, 2, (N, C)).astype("float32"), rng.normal(0, 2, (N, C)).astype("float32")
    if kind == "multilabel":
        labels = (rng.random((N, C)) > 0.6).astype("float32")
        labels[0, 0] = -1.0  # an unknown entry
        ratio = np.tile(rng.random((1, C)).astype("float32"), (N, 1))
        return s, t, np.stack([labels, ratio], axis=1), None
    feats = (rng.normal(size=(N, D)).astype("float32"), rng.normal(size=(N, D)).astype("float32"))
    return s, t, rng.integers(0, C, (N, 1)).astype("int64"), feats if kind == "features" else None


def run(loss, s, t, label, feats):
    import paddle
    st, tt = paddle.to_tensor(s, stop_gradient=False), paddle.to_tensor(t, stop_gradient=False)
    if feats is not None:
        fs, ft = paddle.to_tensor(feats[0], stop_gradient=False), paddle.to_tensor(feats[1], stop_gradient=False)
        predicts = {"Student": {"logits": st, "backbone": fs}, "Teacher": {"logits": tt, "backbone": ft}}
        watched = [st, tt, fs, ft]
    else:
        predicts, watched = {"Student": st, "Teacher": tt}, [st, tt]
    out = loss(predicts, paddle.to_tensor(label))
    value = paddle.add_n(list(out.values())) if isinstance(out, dict) else out
    value.backward()
    grads = [None if w.grad is None else w.grad.numpy() for w in watched]
    return float(value), grads


@contextlib.contextmanager
def bool_masks_as_float():
    """PaddleClas's multi-label DML multiplies by a bool mask, which Paddle 3.3 refuses
    ("Type promotion only support ..."); cast the mask, changing nothing else."""
    import paddle
    original = paddle.Tensor.__mul__

    def mul(self, other):
        if isinstance(other, paddle.Tensor) and other.dtype == paddle.bool:
            other = other.astype(self.dtype)
        return original(self, other)
    paddle.Tensor.__mul__ = mul
    try:
        yield
    finally:
        paddle.Tensor.__mul__ = original


def run_theirs(loss, s, t, label, feats):
    """PaddleClas's loss as it is; if it raises, once more with bool masks cast (flagged)."""
    try:
        return run(loss, s, t, label, feats), ""
    except TypeError as e:
        with bool_masks_as_float():
            return run(loss, s, t, label, feats), f"  [PaddleClas raises on this Paddle ({str(e)[:60]}...); " \
                                                  f"compared with its bool mask cast to float]"


def diff(a, b) -> str:
    if a is None or b is None:
        return "both none" if a is None and b is None else f"ours {'none' if a is None else 'set'} vs theirs " \
                                                            f"{'none' if b is None else 'set'}"
    return f"{np.abs(a - b).max():.2e}"


MODEL_CASES = [
    {"models": [{"Teacher": {"name": "ResNet34", "class_num": 10}}, {"Student": {"name": "ResNet18", "class_num": 10}}],
     "freeze_params_list": [True, False]},
    {"models": [{"Teacher": {"name": "ResNet50_vd", "class_num": 10}},
                {"Student": {"name": "PPLCNet_x1_0", "class_num": 10}}], "freeze_params_list": [True, False]},
]


def compare_models(theirs_arch) -> float:
    import copy
    import paddle
    from ppfreeze.arch import build_model
    worst = 0.0
    for case in MODEL_CASES:
        paddle.seed(0)
        theirs = theirs_arch.DistillationModel(**copy.deepcopy(case))
        ours = build_model({"name": "DistillationModel", **copy.deepcopy(case)})
        t = [(k, list(v.shape)) for k, v in theirs.state_dict().items()]
        o = [(k, list(v.shape)) for k, v in ours.state_dict().items()]
        ours.set_state_dict(theirs.state_dict())
        theirs.eval(), ours.eval()
        x = paddle.to_tensor(np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype("float32"))
        a, b = theirs(x), ours(x)
        d = max(float(np.abs(a[k].numpy() - b[k].numpy()).max()) for k in a)
        names = " / ".join(next(iter(m.values()))["name"] for m in case["models"])
        print(f"DistillationModel {names:<28} keys+shapes equal in order: {t == o} ({len(t)} tensors); "
              f"outputs max |d| {d:.2e}")
        worst = max(worst, d if t == o else float("inf"))
    return worst


# DistillationPairLoss: (kwargs, student feature shape, teacher feature shape); the loss's own parameters
# (PaddleClas's initialisation) are copied into ours, MGD's random mask comes from the same seed
PAIR_CASES = [
    ({"base_loss_name": "MGDLoss", "s_key": "blocks[7]", "t_key": "blocks[15]", "student_channels": 8,
      "teacher_channels": 8}, (N, 8, 4, 4), (N, 8, 4, 4)),
    ({"base_loss_name": "MGDLoss", "s_key": "blocks[7]", "t_key": "blocks[15]", "student_channels": 6,
      "teacher_channels": 8, "lambda_mgd": 0.5}, (N, 6, 4, 4), (N, 8, 4, 4)),
    ({"base_loss_name": "PEFDLoss", "s_key": "avg_pool", "t_key": "avg_pool", "student_channel": 8,
      "teacher_channel": 8}, (N, 8, 1, 1), (N, 8, 1, 1)),
    ({"base_loss_name": "PEFDLoss", "s_key": "avg_pool", "t_key": "avg_pool", "student_channel": 6,
      "teacher_channel": 8, "num_projectors": 2, "mode": "gap"}, (N, 6, 3, 3), (N, 8, 3, 3)),
]


def run_pair(loss, kwargs, s_shape, t_shape, seed):
    """Value, gradients w.r.t. both features, and the gradients of the loss's own parameters (by key)."""
    import paddle
    rng = np.random.default_rng(seed)
    fs = paddle.to_tensor(rng.normal(size=s_shape).astype("float32"), stop_gradient=False)
    ft = paddle.to_tensor(rng.normal(size=t_shape).astype("float32"), stop_gradient=False)
    predicts = {"Student": {"logits": fs.flatten(1), kwargs["s_key"]: fs},
                "Teacher": {"logits": ft.flatten(1), kwargs["t_key"]: ft}}
    paddle.seed(seed)
    out = loss(predicts, paddle.to_tensor(np.zeros((N, 1), "int64")))
    value = paddle.add_n(list(out.values())) if isinstance(out, dict) else out
    value.backward()
    params = {k: p.grad.numpy() for k, p in loss.named_parameters()}
    return float(value), [fs.grad.numpy(), ft.grad.numpy()], params


def compare_pair_losses(theirs_mod) -> float:
    from ppfreeze.loss import LOSSES
    worst = 0.0
    for index, (kwargs, s_shape, t_shape) in enumerate(PAIR_CASES):
        args = {"model_name_pairs": [["Student", "Teacher"]], **kwargs}
        theirs = theirs_mod.DistillationPairLoss(**dict(args))
        ours = LOSSES.build({"DistillationPairLoss": dict(args)}, "DistillationPairLoss")
        t_keys = [(k, list(v.shape)) for k, v in theirs.state_dict().items()]
        o_keys = [(k, list(v.shape)) for k, v in ours.state_dict().items()]
        ours.set_state_dict(theirs.state_dict())
        ours_v, ours_g, ours_p = run_pair(ours, kwargs, s_shape, t_shape, 100 + index)
        theirs_v, theirs_g, theirs_p = run_pair(theirs, kwargs, s_shape, t_shape, 100 + index)
        d = abs(ours_v - theirs_v)
        grads = [float(np.abs(a - b).max()) for a, b in zip(ours_g, theirs_g)]
        param_d = max(float(np.abs(ours_p[k] - theirs_p[k]).max()) for k in ours_p) if t_keys == o_keys else \
            float("inf")
        worst = max(worst, d, param_d, *grads)
        shown = ", ".join(f"{k}={v}" for k, v in kwargs.items() if k not in ("s_key", "t_key"))
        print(f"DistillationPairLoss {shown[:66]:<66} {ours_v:>10.6f} {d:>9.2e}  grads s/t "
              f"{grads[0]:.2e} / {grads[1]:.2e}; own params: keys equal {t_keys == o_keys} ({len(o_keys)}), "
              f"grads {param_d:.2e}")
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paddleclas", required=True, help="a PaddleClas checkout")
    args = parser.parse_args()
    sys.path.insert(0, os.path.abspath(args.paddleclas))
    from ppcls.utils import logger
    logger.init_logger()
    import ppcls.loss as theirs_mod
    import ppcls.arch as theirs_arch
    from ppfreeze.loss import LOSSES
    worst = compare_models(theirs_arch)
    print(f"{'loss':<28} {'kwargs':<60} {'value ours':>12} {'|d value|':>10}  grads: student / teacher (max |d|)")
    for index, (name, kwargs, kind) in enumerate(CASES):
        s, t, label, feats = inputs(kind, index)
        ours_v, ours_g = run(LOSSES.build({name: dict(kwargs)}, name), s, t, label, feats)
        (theirs_v, theirs_g), note = run_theirs(getattr(theirs_mod, name)(**dict(kwargs)), s, t, label, feats)
        d = abs(ours_v - theirs_v)
        grads = " / ".join(diff(a, b) for a, b in zip(ours_g, theirs_g))
        for a, b in zip(ours_g, theirs_g):
            if a is not None and b is not None:
                worst = max(worst, float(np.abs(a - b).max()))
            elif (a is None) != (b is None):
                worst = float("inf")
        worst = max(worst, d)
        shown = ", ".join(f"{k}={v}" for k, v in kwargs.items() if k != "model_name_pairs")
        print(f"{name:<28} {shown[:60]:<60} {ours_v:>12.6f} {d:>10.2e}  {grads}{note}")
    worst = max(worst, compare_pair_losses(theirs_mod))
    print(f"largest difference over all values and gradients: {worst:.2e}")
    return 0 if worst < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
