"""Multi-label losses on per-class logits (PaddleClas ``MultiLabelLoss``, ``MultiLabelAsymmetricLoss``).

Targets are ``[N, C]`` 0/1 floats, or ``[N, 2, C]`` from ``MultiLabelDataset(label_ratio:
true)``: row 0 the labels, row 1 each class's positive share in the training list.
"""
from __future__ import annotations

from typing import Optional

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..config.errors import ConfigError
from .celoss import ModelOutput, check_reduction, logits_of
from .registry import LOSSES


def multilabel_target(target: paddle.Tensor, logits: paddle.Tensor, who: str) -> paddle.Tensor:
    """The ``[N, C]`` labels of a ``[N, C]`` or ``[N, 2, C]`` target, checked against the logits."""
    labels = target[:, 0, :] if target.ndim == 3 else target
    if labels.ndim != 2 or labels.shape != logits.shape:
        raise ValueError(f"{who}: targets of shape {list(target.shape)} do not fit logits of shape "
                         f"{list(logits.shape)}; expected [N, C] or [N, 2, C] with C = Arch.class_num "
                         f"(one label per class in the list file)")
    return labels.astype(logits.dtype)


@LOSSES.register
class MultiLabelLoss(nn.Layer):
    """Binary cross entropy per class on logits.

    ``loss = mean(BCE)`` over samples and classes, or with ``size_sum`` the per-sample sum
    over classes averaged over samples.

    Args:
        epsilon: label smoothing in (0, 1): targets become ``(1 - epsilon) * t + epsilon / C``.
        size_sum: sum over classes before averaging over samples.
        weight_ratio: weight by the classes' positive shares ``r`` (needs ``[N, 2, C]``
            targets, ``MultiLabelDataset(label_ratio: true)``): positives by ``exp(1 - r)``,
            negatives by ``exp(r)``, so rare attributes weigh more; entries whose target is
            -1 or below (unknown) get weight 0.
    """

    def __init__(self, epsilon: Optional[float] = None, size_sum: bool = False, weight_ratio: bool = False):
        super().__init__()
        self.epsilon = _checked_epsilon(epsilon)
        for name, value in (("size_sum", size_sum), ("weight_ratio", weight_ratio)):
            if not isinstance(value, bool):
                raise ConfigError(name, f"must be true or false, got {value!r}")
        self.size_sum = size_sum
        self.weight_ratio = weight_ratio

    def forward(self, output: ModelOutput, target: paddle.Tensor) -> paddle.Tensor:
        logits = logits_of(output)
        if self.weight_ratio and target.ndim != 3:
            raise ValueError("MultiLabelLoss(weight_ratio=True) needs [N, 2, C] targets (labels and class "
                             "ratios): set label_ratio: true on the MultiLabelDataset")
        labels = multilabel_target(target, logits, "MultiLabelLoss")
        if self.epsilon is not None:
            labels = (1.0 - self.epsilon) * labels + self.epsilon / logits.shape[-1]
        cost = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        if self.weight_ratio:
            cost = cost * _ratio_weights(labels, target[:, 1, :].astype(logits.dtype))
        return cost.sum(axis=1).mean() if self.size_sum else cost.mean()


def _ratio_weights(labels: paddle.Tensor, ratio: paddle.Tensor) -> paddle.Tensor:
    positive = (labels > 0.5).astype(labels.dtype)
    weights = paddle.exp(positive * (1.0 - ratio) + (1.0 - positive) * ratio)
    return weights * (labels > -1).astype(labels.dtype)


@LOSSES.register
class MultiLabelAsymmetricLoss(nn.Layer):
    """Asymmetric loss (Ben-Baruch et al. 2020, arXiv:2009.14119) on per-class logits.

    With ``p = sigmoid(logit)``: positives ``-(1 - p)^gamma_pos * log(p)``; negatives use the
    shifted probability ``p_m = max(p - clip, 0)``: ``-p_m^gamma_neg * log(1 - p_m)``.
    ``log`` is clipped at ``epsilon``.

    Args:
        gamma_pos, gamma_neg: focusing exponents of positives and negatives.
        clip: probability margin subtracted for negatives (0 or null: none).
        epsilon: lower clip inside the log.
        disable_focal_loss_grad: treat the focusing weights as constants in backward.
        reduction: "sum" (PaddleClas's default) or "mean" over all elements.
    """

    def __init__(self, gamma_pos: float = 1, gamma_neg: float = 4, clip: Optional[float] = 0.05,
                 epsilon: float = 1e-8, disable_focal_loss_grad: bool = True, reduction: str = "sum"):
        super().__init__()
        self.gamma_pos = float(gamma_pos)
        self.gamma_neg = float(gamma_neg)
        self.clip = float(clip) if clip else 0.0
        if self.clip < 0:
            raise ConfigError("clip", f"must be >= 0, got {clip}")
        self.epsilon = float(epsilon)
        if not isinstance(disable_focal_loss_grad, bool):
            raise ConfigError("disable_focal_loss_grad", f"must be true or false, got {disable_focal_loss_grad!r}")
        self.disable_focal_loss_grad = disable_focal_loss_grad
        self.reduction = check_reduction(reduction)

    def forward(self, output: ModelOutput, target: paddle.Tensor) -> paddle.Tensor:
        logits = logits_of(output)
        labels = multilabel_target(target, logits, "MultiLabelAsymmetricLoss")
        prob = F.sigmoid(logits)
        negative_prob = (1.0 - prob + self.clip).clip(max=1.0) if self.clip > 0 else 1.0 - prob
        # probability given to the true answer of each entry
        pt = negative_prob * (1.0 - labels) + prob * labels
        exponent = self.gamma_pos * labels + self.gamma_neg * (1.0 - labels)
        if self.disable_focal_loss_grad:
            with paddle.no_grad():
                weight = paddle.pow(1.0 - pt, exponent)
        else:
            weight = paddle.pow(1.0 - pt, exponent)
        loss = -paddle.log(pt.clip(min=self.epsilon)) * weight
        return loss.sum() if self.reduction == "sum" else loss.mean()


def _checked_epsilon(epsilon: Optional[float]) -> Optional[float]:
    if epsilon is None:
        return None
    value = float(epsilon)
    if not 0.0 <= value < 1.0:
        raise ConfigError("epsilon", f"label smoothing epsilon must be in [0, 1), got {value}")
    return value if value > 0.0 else None
