"""Best true-positive rate under a false-positive-rate cap (PaddleClas ``TprAtFpr``), numpy only.

For binary classifiers (the PULC "exists" tasks): the score of an image is the softmax
probability of class 1; label 0 marks negatives, any other label positives. Thresholds
0, 0.0001, ..., 0.9999 are tried; the result is the highest TPR among thresholds whose FPR
is at most ``max_fpr`` (the first such threshold on ties).
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from ..config.errors import ConfigError
from .epoch import EpochMetric, softmax32
from .registry import METRICS

THRESHOLDS = np.arange(10000) / 10000.0


@METRICS.register
class TprAtFpr(EpochMetric):
    """``tpr`` (the model-selection key), with the ``fpr`` and ``threshold`` where it is reached.

    With no threshold qualifying, ``tpr`` is 0 and the other two are NaN. With no negative
    image every threshold qualifies (FPR undefined, reported as 0; PaddleClas warns likewise).

    Args:
        max_fpr: the false-positive-rate cap.
    """

    def __init__(self, max_fpr: float = 1 / 1000.0):
        super().__init__()
        if isinstance(max_fpr, bool) or not isinstance(max_fpr, (int, float)):
            raise ConfigError("max_fpr", f"must be a number, got {max_fpr!r}")
        self.max_fpr = max_fpr

    def compute(self) -> Dict[str, float]:
        logits, labels = self._stacked()
        if logits.ndim != 2 or logits.shape[1] < 2:
            raise ValueError(f"TprAtFpr needs [N, C >= 2] logits (binary classifier), got {list(logits.shape)}")
        scores = softmax32(logits)[:, 1]
        negative = labels.reshape(len(labels), -1)[:, 0] == 0
        return tpr_at_fpr(scores[~negative], scores[negative], self.max_fpr)


def _count_above(scores: np.ndarray) -> np.ndarray:
    """How many ``scores`` exceed each threshold (compared in the scores' float32, as PaddleClas does)."""
    ordered = np.sort(scores)
    return len(ordered) - np.searchsorted(ordered, THRESHOLDS.astype(ordered.dtype), side="right")


def tpr_at_fpr(pos_scores: np.ndarray, neg_scores: np.ndarray, max_fpr: float) -> Dict[str, float]:
    """``{"tpr", "fpr", "threshold"}`` from the class-1 scores of positive and negative images."""
    none = {"tpr": 0.0, "fpr": float("nan"), "threshold": float("nan")}
    if len(pos_scores) == 0:
        return none
    tpr = _count_above(pos_scores) / len(pos_scores)
    if len(neg_scores) == 0:
        fpr, allowed = np.zeros_like(tpr), np.ones_like(tpr, dtype=bool)
    else:
        fpr = _count_above(neg_scores) / len(neg_scores)
        allowed = fpr <= max_fpr
    if not allowed.any() or tpr[allowed].max() <= 0:
        return none
    best = int(np.flatnonzero(allowed & (tpr == tpr[allowed].max()))[0])
    return {"tpr": float(tpr[best]), "fpr": float(fpr[best]), "threshold": float(THRESHOLDS[best])}
