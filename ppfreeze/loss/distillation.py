"""Distillation losses on a ``DistillationModel``'s output (PaddleClas's names and arguments).

The model returns ``{model name: output}``. A loss reads models by name:

- ``model_name_pairs: [[Student, Teacher], ...]``: the loss of the first model of each pair
  against the second (``DistillationCELoss``, ``DMLLoss``, ``KLDivLoss``, ``DKDLoss``, ...);
- ``model_names: [Student, ...]``: a ground-truth loss of each model (``DistillationGTCELoss``,
  ``DistillationMultiLabelLoss``);
- ``key``: when the models return dicts (RecModel: ``logits``, ``features``, ``backbone``), the
  entry to use; without it a dict output gives its ``logits``.

Each loss returns the sum over its pairs / models (PaddleClas returns one dict entry per pair,
which its combination adds up when more than one loss is configured). ``name`` is accepted for
PaddleClas compatibility. The math equals PaddleClas's on the same inputs, values and gradients
(``tools/dev/compare_distillation_losses.py``); a deliberate difference: ``DistillationCELoss``
with ``epsilon`` smooths the teacher's softmax (PaddleClas smooths the raw teacher logits).
Teacher outputs are not detached: a frozen teacher gets no gradient because the Freeze plan
freezes it, and under DML (both trainable) gradients reach both models as in PaddleClas.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..config.errors import ConfigError
from .celoss import CELoss, logits_of
from .multilabel import MultiLabelLoss, _ratio_weights
from .registry import LOSSES

Pair = Tuple[str, str]


def _checked_pairs(pairs: Any) -> List[Pair]:
    if not isinstance(pairs, (list, tuple)) or not pairs or not all(
            isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(n, str) for n in p) for p in pairs):
        raise ConfigError("model_name_pairs", f"expected a non-empty list of [model, model] pairs, got {pairs!r}",
                          "e.g. model_name_pairs: [[Student, Teacher]] (the first learns from the second)")
    return [(a, b) for a, b in pairs]


def _checked_names(names: Any) -> List[str]:
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
        raise ConfigError("model_names", f"expected a non-empty list of model names, got {names!r}",
                          "e.g. model_names: [Student]")
    return list(names)


def _checked_choice(value: Any, choices: Sequence[Any], arg: str) -> Any:
    if value not in choices:
        raise ConfigError(arg, f"expected one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def model_output(predicts: Any, name: str, key: Optional[str], arg: str) -> Any:
    """``predicts[name]`` (then ``[key]``): one model's output in a ``DistillationModel``'s dict."""
    if not isinstance(predicts, dict) or name not in predicts:
        have = f"it has {sorted(predicts)}" if isinstance(predicts, dict) else f"it is a {type(predicts).__name__}"
        raise ConfigError(arg, f"the model output has no model '{name}' ({have})",
                          "distillation losses need Arch.name: DistillationModel and its model names")
    out = predicts[name]
    if key is not None:
        if not isinstance(out, dict) or key not in out:
            have = sorted(out) if isinstance(out, dict) else "a tensor"
            raise ConfigError("key", f"model '{name}' returns {have}, which has no '{key}'",
                              "drop key for models that return a tensor")
        return out[key]
    return out


class _PairLoss(nn.Layer):
    """Base of the losses over ``model_name_pairs``: ``pair_loss(student, teacher, label)`` summed."""

    def __init__(self, model_name_pairs: Any, key: Optional[str]):
        super().__init__()
        self.model_name_pairs = _checked_pairs(model_name_pairs)
        self.key = key

    def forward(self, predicts: Any, label: paddle.Tensor) -> paddle.Tensor:
        losses = []
        for first, second in self.model_name_pairs:
            out1 = model_output(predicts, first, self.key, "model_name_pairs")
            out2 = model_output(predicts, second, self.key, "model_name_pairs")
            losses.append(self.pair_loss(out1, out2, label))
        return paddle.add_n(losses) if len(losses) > 1 else losses[0]

    def pair_loss(self, out1: Any, out2: Any, label: paddle.Tensor) -> paddle.Tensor:
        raise NotImplementedError


def _class_ids(label: paddle.Tensor) -> paddle.Tensor:
    return label.reshape([-1]).astype("int64")


@LOSSES.register
class DistillationCELoss(_PairLoss):
    """Cross entropy of the first model's logits against the softmax of the second's."""

    def __init__(self, model_name_pairs: Any = None, epsilon: Optional[float] = None, key: Optional[str] = None,
                 name: str = "loss_ce"):
        super().__init__(model_name_pairs, key)
        self.smoothing = CELoss(epsilon=epsilon).epsilon

    def pair_loss(self, out1: Any, out2: Any, label: paddle.Tensor) -> paddle.Tensor:
        student, teacher = logits_of(out1), logits_of(out2)
        target = F.softmax(teacher, axis=-1)
        if self.smoothing is None:
            return F.cross_entropy(student, target, soft_label=True, reduction="mean")
        target = F.label_smooth(target, epsilon=self.smoothing)
        return -(F.log_softmax(student, axis=-1) * target).sum(axis=-1).mean()


@LOSSES.register
class DistillationGTCELoss(nn.Layer):
    """``CELoss`` (with optional label smoothing) of each model in ``model_names`` against the labels."""

    def __init__(self, model_names: Any = None, epsilon: Optional[float] = None, key: Optional[str] = None,
                 name: str = "loss_gt_ce"):
        super().__init__()
        self.model_names = _checked_names(model_names)
        self.key = key
        self.ce = CELoss(epsilon=epsilon)

    def forward(self, predicts: Any, label: paddle.Tensor) -> paddle.Tensor:
        losses = [self.ce(model_output(predicts, n, self.key, "model_names"), label) for n in self.model_names]
        return paddle.add_n(losses) if len(losses) > 1 else losses[0]


@LOSSES.register
class DistillationMultiLabelLoss(nn.Layer):
    """``MultiLabelLoss`` of each model in ``model_names`` against the multi-label targets."""

    def __init__(self, model_names: Any = None, epsilon: Optional[float] = None, size_sum: bool = False,
                 weight_ratio: bool = False, key: Optional[str] = None, name: str = "loss_mll"):
        super().__init__()
        self.model_names = _checked_names(model_names)
        self.key = key
        self.loss = MultiLabelLoss(epsilon=epsilon, size_sum=size_sum, weight_ratio=weight_ratio)

    def forward(self, predicts: Any, label: paddle.Tensor) -> paddle.Tensor:
        losses = [self.loss(model_output(predicts, n, self.key, "model_names"), label) for n in self.model_names]
        return paddle.add_n(losses) if len(losses) > 1 else losses[0]


@LOSSES.register
class DistillationDMLLoss(_PairLoss):
    """Deep mutual learning (Zhang et al. 2018): the symmetric KL divergence of the two models'
    distributions, ``(KL(p1 || p2) + KL(p2 || p1)) / 2``, each term ``sum t log((t + eps) / (x + eps))``
    scaled by the class count (PaddleClas's normalisation).

    Args:
        act: ``softmax`` | ``sigmoid`` (multi-label) | null (inputs are already probabilities).
        weight_ratio: weight each class by the positive shares in ``[N, 2, C]`` multi-label targets
            (positives ``exp(1 - r)``, negatives ``exp(r)``, unknown (-1) entries 0).
        sum_across_class_dim: sum over classes before averaging over samples (else the mean of all).
    """

    EPS = 1e-12

    def __init__(self, model_name_pairs: Any = None, act: Optional[str] = "softmax", weight_ratio: bool = False,
                 sum_across_class_dim: bool = False, key: Optional[str] = None, name: str = "loss_dml"):
        super().__init__(model_name_pairs, key)
        self.act = _checked_choice(act, ("softmax", "sigmoid", None), "act")
        self.weight_ratio = bool(weight_ratio)
        self.sum_across_class_dim = bool(sum_across_class_dim)

    def _probabilities(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.act == "softmax":
            return F.softmax(x, axis=-1)
        return F.sigmoid(x) if self.act == "sigmoid" else x

    def _kl(self, x: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
        return target * paddle.log((target + self.EPS) / (x + self.EPS)) * x.shape[-1]

    def pair_loss(self, out1: Any, out2: Any, label: paddle.Tensor) -> paddle.Tensor:
        p1, p2 = self._probabilities(logits_of(out1)), self._probabilities(logits_of(out2))
        loss = (self._kl(p1, p2) + self._kl(p2, p1)) / 2
        if self.weight_ratio:
            if label.ndim != 3:
                raise ValueError("DistillationDMLLoss(weight_ratio=True) needs [N, 2, C] targets (labels and class "
                                 "ratios): set label_ratio: true on the MultiLabelDataset")
            loss = loss * _ratio_weights(label[:, 0, :].astype(loss.dtype), label[:, 1, :].astype(loss.dtype))
        return loss.sum(axis=1).mean() if self.sum_across_class_dim else loss.mean()


@LOSSES.register
class DistillationKLDivLoss(_PairLoss):
    """Hinton et al.'s KD loss: ``T^2 * KL(softmax(t / T) || softmax(s / T))``, summed over classes,
    averaged over samples."""

    def __init__(self, model_name_pairs: Any = None, temperature: float = 4, key: Optional[str] = None,
                 name: str = "loss_kl"):
        super().__init__(model_name_pairs, key)
        self.temperature = float(temperature)

    def pair_loss(self, out1: Any, out2: Any, label: paddle.Tensor) -> paddle.Tensor:
        student, teacher, t = logits_of(out1), logits_of(out2), self.temperature
        kl = F.kl_div(F.log_softmax(student / t, axis=1), F.softmax(teacher / t, axis=1), reduction="sum")
        return kl * (t ** 2) / student.shape[0]


def _two_bins(p: paddle.Tensor, gt: paddle.Tensor) -> paddle.Tensor:
    """``[N, C]`` probabilities -> ``[N, 2]``: the target class's and all the others' together."""
    return paddle.concat([(p * gt).sum(axis=1, keepdim=True), (p * (1 - gt)).sum(axis=1, keepdim=True)], axis=1)


@LOSSES.register
class DistillationDKDLoss(_PairLoss):
    """Decoupled KD (Zhao et al. 2022, arXiv:2203.08679): ``alpha * TCKD + beta * NCKD``, the KL
    of target-vs-rest probabilities and the KL over the non-target classes, both at temperature
    ``T`` and scaled by ``T^2``. The target is the label (the teacher's argmax with
    ``use_target_as_gt``)."""

    def __init__(self, model_name_pairs: Any = None, key: Optional[str] = None, temperature: float = 1.0,
                 alpha: float = 1.0, beta: float = 1.0, use_target_as_gt: bool = False, name: str = "loss_dkd"):
        super().__init__(model_name_pairs, key)
        self.temperature, self.alpha, self.beta = float(temperature), float(alpha), float(beta)
        self.use_target_as_gt = bool(use_target_as_gt)

    def pair_loss(self, out1: Any, out2: Any, label: paddle.Tensor) -> paddle.Tensor:
        student, teacher, t = logits_of(out1), logits_of(out2), self.temperature
        target = teacher.argmax(axis=-1) if self.use_target_as_gt else _class_ids(label)
        gt = F.one_hot(target.reshape([-1]), student.shape[-1]).astype(student.dtype)
        n = target.shape[0]
        bins_s = _two_bins(F.softmax(student / t, axis=1), gt)
        bins_t = _two_bins(F.softmax(teacher / t, axis=1), gt)
        tckd = F.kl_div(paddle.log(bins_s), bins_t, reduction="sum") * (t ** 2) / n
        # non-target classes only: the target logit pushed out of the softmax
        nckd = F.kl_div(F.log_softmax(student / t - 1000.0 * gt, axis=1), F.softmax(teacher / t - 1000.0 * gt, axis=1),
                        reduction="sum") * (t ** 2) / n
        return self.alpha * tckd + self.beta * nckd


@LOSSES.register
class DistillationWSLLoss(_PairLoss):
    """Weighted soft labels (Zhou et al. 2021, arXiv:2102.00650): the KD cross entropy at
    temperature ``T`` weighted per sample by ``1 - exp(-CE_student / CE_teacher)`` (both against
    the labels, not differentiated), times ``T^2``, averaged."""

    def __init__(self, model_name_pairs: Any = None, key: Optional[str] = None, temperature: float = 2.0,
                 name: str = "wsl_loss"):
        super().__init__(model_name_pairs, key)
        self.temperature = float(temperature)

    def pair_loss(self, out1: Any, out2: Any, label: paddle.Tensor) -> paddle.Tensor:
        student, teacher, t = logits_of(out1), logits_of(out2), self.temperature
        gt = F.one_hot(_class_ids(label), student.shape[-1]).astype(student.dtype)
        ce_student = -(gt * F.log_softmax(student.detach(), axis=-1)).sum(axis=1)
        ce_teacher = -(gt * F.log_softmax(teacher.detach(), axis=-1)).sum(axis=1)
        weight = 1 - paddle.exp(-paddle.maximum(ce_student / (ce_teacher + 1e-7), paddle.zeros_like(ce_student)))
        kd = -(F.softmax(teacher / t, axis=-1) * F.log_softmax(student / t, axis=-1)).sum(axis=1)
        return (t ** 2) * (kd * weight).mean()


@LOSSES.register
class DistillationSKDLoss(_PairLoss):
    """Spherical KD (Guo et al. 2020, arXiv:2010.07485): both models' logits layer-normalised
    (no affine) and scaled by ``multiplier``, then ``alpha * T^2 * KD + (1 - alpha) * CE`` of the
    student's normalised logits against the labels (the teacher's argmax with ``use_target_as_gt``)."""

    def __init__(self, model_name_pairs: Any = None, key: Optional[str] = None, temperature: float = 1.0,
                 multiplier: float = 2.0, alpha: float = 0.9, use_target_as_gt: bool = False, name: str = "skd_loss"):
        super().__init__(model_name_pairs, key)
        self.temperature, self.multiplier, self.alpha = float(temperature), float(multiplier), float(alpha)
        self.use_target_as_gt = bool(use_target_as_gt)

    def _spherical(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.layer_norm(x, x.shape[1:], weight=None, bias=None, epsilon=1e-7) * self.multiplier

    def pair_loss(self, out1: Any, out2: Any, label: paddle.Tensor) -> paddle.Tensor:
        student, teacher, t = logits_of(out1), logits_of(out2), self.temperature
        target = teacher.argmax(axis=-1) if self.use_target_as_gt else _class_ids(label)
        gt = F.one_hot(target.reshape([-1]), student.shape[-1]).astype(student.dtype)
        student, teacher = self._spherical(student), self._spherical(teacher)
        kd = -(F.softmax(teacher / t, axis=-1) * F.log_softmax(student / t, axis=-1)).sum(axis=1).mean() * t ** 2
        ce = (-(gt * F.log_softmax(student, axis=-1)).sum(axis=1)).mean()
        return kd * self.alpha + ce * (1 - self.alpha)


def _pearson(a: paddle.Tensor, b: paddle.Tensor, eps: float = 1e-8) -> paddle.Tensor:
    a = a - a.mean(axis=1, keepdim=True)
    b = b - b.mean(axis=1, keepdim=True)
    return (a * b).sum(axis=1) / (a.norm(axis=1) * b.norm(axis=1) + eps)


@LOSSES.register
class DistillationDISTLoss(_PairLoss):
    """DIST (Huang et al. 2022, arXiv:2205.10536): ``beta * (1 - mean Pearson correlation of the
    two softmax outputs per sample) + gamma * (the same per class)``."""

    def __init__(self, model_name_pairs: Any = None, key: Optional[str] = None, beta: float = 1.0,
                 gamma: float = 1.0, name: str = "loss_dist"):
        super().__init__(model_name_pairs, key)
        self.beta, self.gamma = float(beta), float(gamma)

    def pair_loss(self, out1: Any, out2: Any, label: paddle.Tensor) -> paddle.Tensor:
        y_s, y_t = F.softmax(logits_of(out1), axis=-1), F.softmax(logits_of(out2), axis=-1)
        inter = 1 - _pearson(y_s, y_t).mean()
        intra = 1 - _pearson(y_s.transpose([1, 0]), y_t.transpose([1, 0])).mean()
        return self.beta * inter + self.gamma * intra


@LOSSES.register
class DistillationDistanceLoss(_PairLoss):
    """L1 / L2 (MSE) / smooth-L1 distance between the two models' outputs (``key``: e.g. features),
    optionally after a sigmoid or softmax. Extra keyword arguments go to the Paddle loss
    (``reduction``, smooth-L1's ``delta``)."""

    MODES = {"l1": nn.L1Loss, "l2": nn.MSELoss, "smooth_l1": nn.SmoothL1Loss}

    def __init__(self, mode: str = "l2", model_name_pairs: Any = None, act: Optional[str] = None,
                 key: Optional[str] = None, name: str = "loss_", **kwargs: Any):
        super().__init__(model_name_pairs, key)
        self.mode = _checked_choice(mode, tuple(self.MODES), "mode")
        self.act = _checked_choice(act, (None, "sigmoid", "softmax"), "act")
        try:
            self.distance = self.MODES[mode](**kwargs)
        except TypeError as e:
            raise ConfigError(next(iter(kwargs), "mode"), f"not an argument of paddle.nn.{self.MODES[mode].__name__}: {e}")

    def _activated(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.act == "sigmoid":
            return F.sigmoid(x)
        return F.softmax(x, axis=-1) if self.act == "softmax" else x

    def pair_loss(self, out1: Any, out2: Any, label: paddle.Tensor) -> paddle.Tensor:
        return self.distance(self._activated(logits_of(out1)), self._activated(logits_of(out2)))
