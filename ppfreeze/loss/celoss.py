"""Cross-entropy loss with optional label smoothing (PaddleClas ``CELoss``)."""
from __future__ import annotations

from typing import Dict, Optional, Union

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..config.errors import ConfigError
from ..arch.outputs import primary_output
from ..config.expr import to_number
from .registry import LOSSES

ModelOutput = Union[paddle.Tensor, Dict[str, paddle.Tensor]]


def logits_of(output: ModelOutput) -> paddle.Tensor:
    """Return the logits of a model output: the tensor itself or ``output["logits"]``; of a
    ``DistillationModel``'s output, those of its deployed model (``infer_model_name``)."""
    output = primary_output(output)
    if isinstance(output, dict):
        if "logits" not in output:
            raise ConfigError("Loss", f"the model returned a dict without 'logits' (keys: {sorted(output)})",
                              "a classification loss or metric needs the logits")
        return output["logits"]
    if isinstance(output, (list, tuple)):
        # a user mistake (the config pairs the model with the wrong loss / metric), not a bug
        raise ConfigError("Loss", f"the model returned {len(output)} outputs (GoogLeNet: [logits, aux1, aux2])",
                          "use GoogLeNetLoss in Loss and GoogLeNetTopkAcc in Metric with it")
    return output


@LOSSES.register
class CELoss(nn.Layer):
    """Cross entropy between logits ``[N, C]`` and labels, averaged (or summed) over samples.

    Labels are class ids (int, ``[N]`` or ``[N, 1]``) or soft targets (float ``[N, C]``,
    e.g. from mixup).  ``epsilon`` in (0, 1) smooths the target towards uniform:
    ``(1 - epsilon) * target + epsilon / C``.  ``None`` or 0 means no smoothing.
    ``reduction``: "mean" (default) or "sum" over the batch; PaddleClas's "none" is refused
    (ppfreeze's training step needs a scalar).

    Soft targets are used as given. (Without epsilon, PaddleClas's CELoss passes
    ``softmax(target)`` to cross entropy instead, which flattens a mixed one-hot target towards
    uniform; with epsilon both compute the same loss.)
    """

    def __init__(self, epsilon: Optional[float] = None, reduction: str = "mean"):
        super().__init__()
        self.epsilon = _checked_epsilon(epsilon)
        self.reduction = check_reduction(reduction)

    def forward(self, output: ModelOutput, label: paddle.Tensor) -> paddle.Tensor:
        per_sample = self.per_sample(output, label)
        return per_sample.sum() if self.reduction == "sum" else per_sample.mean()

    def per_sample(self, output: ModelOutput, label: paddle.Tensor) -> paddle.Tensor:
        """The loss of every sample, shape ``[N]`` or ``[N, 1]`` (PaddleClas's ``reduction: none``)."""
        logits = logits_of(output)
        num_classes = logits.shape[-1]
        _check_label_shape(label, num_classes)
        if self.epsilon is None and not _is_soft(label, num_classes):
            return F.cross_entropy(logits, _as_column(label), reduction="none")
        target = _soft_target(label, num_classes)
        if self.epsilon is not None:
            target = F.label_smooth(target, epsilon=self.epsilon)
        return -(F.log_softmax(logits, axis=-1) * target).sum(axis=-1)


def check_reduction(reduction: str) -> str:
    """``mean`` or ``sum``; ``none`` (per-element losses) cannot drive ppfreeze's scalar training step."""
    if reduction not in ("mean", "sum"):
        raise ConfigError("reduction", f"must be 'mean' or 'sum', got {reduction!r} (ppfreeze trains on a scalar "
                         "loss; PaddleClas uses 'none' only inside its semi-supervised trainer)")
    return reduction


def _checked_epsilon(epsilon: Optional[float]) -> Optional[float]:
    if epsilon is None:
        return None
    value = float(to_number(epsilon, "epsilon"))
    if not 0.0 <= value < 1.0:
        raise ConfigError("epsilon", f"label smoothing epsilon must be in [0, 1), got {value}",
                          "use e.g. 0.1, or remove the key for plain cross entropy")
    return value if value > 0.0 else None


def _is_soft(label: paddle.Tensor, num_classes: int) -> bool:
    # [N, C] float targets come from mixup/cutmix; [N, 1] int ids are hard labels.
    return label.ndim == 2 and label.shape[-1] == num_classes and num_classes > 1 \
        and label.dtype in (paddle.float16, paddle.bfloat16, paddle.float32, paddle.float64)


def _check_label_shape(label: paddle.Tensor, num_classes: int) -> None:
    # float [N, K] targets for K != C would otherwise be read as (truncated) class ids
    if label.ndim == 2 and label.shape[-1] > 1 and not _is_soft(label, num_classes):
        raise ValueError(f"CELoss: labels of shape {list(label.shape)} ({label.dtype}) do not fit {num_classes} "
                         f"classes; expected class ids [N] / [N, 1] or soft targets [N, {num_classes}] "
                         f"(check the batch op's num_classes against Arch.class_num)")


def _as_column(label: paddle.Tensor) -> paddle.Tensor:
    return label.reshape([-1, 1]).astype("int64")


def _soft_target(label: paddle.Tensor, num_classes: int) -> paddle.Tensor:
    if _is_soft(label, num_classes):
        return label.astype("float32")
    return F.one_hot(label.reshape([-1]).astype("int64"), num_classes)
