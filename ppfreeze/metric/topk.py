"""Top-k classification accuracy (PaddleClas ``TopkAcc``)."""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence, Union

import paddle

from ..config.errors import ConfigError

from ..loss.celoss import ModelOutput, logits_of
from .registry import METRICS

logger = logging.getLogger(__name__)


@METRICS.register
class TopkAcc:
    """Fraction of samples whose label is among the ``k`` highest logits, for each ``k``.

    Returns ``{"top1": t, "top5": t}`` for one batch, as 0-d tensors left on the device (the
    engine reads them only on log steps).  A ``k`` larger than the
    number of classes is computed as ``k = num_classes`` (always 1.0) with a one-time warning.
    """

    def __init__(self, topk: Union[int, Sequence[int]] = (1, 5)):
        self.topk = _checked_topk(topk)
        self._warned = False

    def __call__(self, output: ModelOutput, label: paddle.Tensor) -> Dict[str, paddle.Tensor]:
        logits = logits_of(output)
        num_classes = logits.shape[-1]
        self._warn_if_clipped(num_classes)
        ids = _class_ids(label, num_classes)
        max_k = min(max(self.topk), num_classes)
        top_ids = paddle.topk(logits, k=max_k, axis=-1)[1]
        # Each row holds at most one hit, so the running sum says "hit within the first j".
        hit_within = (top_ids == ids.unsqueeze(-1)).astype("float32").cumsum(axis=-1).mean(axis=0)
        return {f"top{k}": hit_within[min(k, num_classes) - 1] for k in self.topk}

    def _warn_if_clipped(self, num_classes: int) -> None:
        too_big = [k for k in self.topk if k > num_classes]
        if too_big and not self._warned:
            logger.warning("TopkAcc: k=%s exceeds the %d classes; computed with k=%d (always 1.0)",
                           too_big, num_classes, num_classes)
            self._warned = True


@METRICS.register
class GoogLeNetTopkAcc(TopkAcc):
    """TopkAcc of the first output of a model returning ``[logits, aux1, aux2]`` (GoogLeNet)."""

    def __call__(self, output: Sequence[ModelOutput], label: paddle.Tensor) -> Dict[str, float]:
        if not isinstance(output, (list, tuple)):
            raise TypeError(f"GoogLeNetTopkAcc needs the model's [logits, aux1, aux2] outputs, got "
                            f"{type(output).__name__} (use TopkAcc for other models)")
        return super().__call__(output[0], label)


def _checked_topk(topk: Union[int, Sequence[int]]) -> List[int]:
    ks = [topk] if isinstance(topk, int) else list(topk)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ConfigError("topk", f"expected a positive integer or a list of them, got {topk!r}")
    return ks


def _class_ids(label: paddle.Tensor, num_classes: int) -> paddle.Tensor:
    """Class ids ``[N]`` from ids ``[N]`` / ``[N, 1]`` or soft targets ``[N, C]`` (argmax)."""
    if label.ndim == 2 and label.shape[-1] == num_classes and num_classes > 1:
        return label.argmax(axis=-1).astype("int64")
    return label.reshape([-1]).astype("int64")


@METRICS.register
class DistillationTopkAcc(TopkAcc):
    """``TopkAcc`` of one model of a ``DistillationModel`` (PaddleClas's ``DistillationTopkAcc``).

    Args:
        model_key: the model whose output is scored (``Student``).
        feature_key: the entry of that model's dict output to score (default: its logits).
        topk: as ``TopkAcc``.
    """

    def __init__(self, model_key: str, feature_key: Optional[str] = None, topk: Union[int, Sequence[int]] = (1, 5)):
        super().__init__(topk=topk)
        self.model_key = model_key
        self.feature_key = feature_key

    def __call__(self, output: ModelOutput, label: paddle.Tensor) -> Dict[str, paddle.Tensor]:
        if isinstance(output, dict) and self.model_key in output:
            output = output[self.model_key]
        elif isinstance(output, dict) and "logits" not in output:
            raise ConfigError("model_key", f"the model output has no model '{self.model_key}' (it has {sorted(output)})",
                              "name one of the DistillationModel's models, e.g. model_key: Student")
        if self.feature_key is not None:
            if not isinstance(output, dict) or self.feature_key not in output:
                raise ConfigError("feature_key", f"the output of '{self.model_key}' has no '{self.feature_key}'")
            output = output[self.feature_key]
        return super().__call__(output, label)
