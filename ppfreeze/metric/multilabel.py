"""Multi-label metrics (PaddleClas ``HammingDistance``, ``AccuracyScore``, ``MultiLabelMAP``), numpy only.

A class is predicted present when its sigmoid probability exceeds 0.5 (float32, as PaddleClas
thresholds it). Targets are ``[N, C]`` 0/1 (``[N, 2, C]`` targets use their first row).
"""
from __future__ import annotations

from typing import Any, Dict, List

import numpy as np

from ..config.errors import ConfigError
from ..loss.celoss import logits_of
from .epoch import EpochMetric, first_label_row, sigmoid32, to_numpy
from .registry import METRICS

PRESENCE_THRESHOLD = 0.5


def predictions_and_targets(output: Any, target: Any) -> tuple:
    """0/1 predictions and ``[N, C]`` targets of one batch."""
    logits = to_numpy(logits_of(output))
    labels = first_label_row(to_numpy(target))
    if labels.shape != logits.shape:
        raise ValueError(f"multi-label targets of shape {list(labels.shape)} do not fit logits of shape "
                         f"{list(logits.shape)}")
    return (sigmoid32(logits) > PRESENCE_THRESHOLD).astype(labels.dtype), labels


@METRICS.register
class HammingDistance:
    """Share of (sample, class) entries predicted wrong (lower is better): ``HammingDistance``."""

    def __call__(self, output: Any, target: Any) -> Dict[str, float]:
        preds, labels = predictions_and_targets(output, target)
        return {"HammingDistance": float(np.mean(preds != labels))}


@METRICS.register
class AccuracyScore:
    """Multi-label accuracy: ``AccuracyScore``.

    Args:
        base: "label" (default): share of (sample, class) entries predicted right;
            "sample": share of samples whose every class is right (subset accuracy).
    """

    def __init__(self, base: str = "label"):
        if base not in ("sample", "label"):
            raise ConfigError("base", f"must be 'sample' or 'label', got {base!r}")
        self.base = base

    def __call__(self, output: Any, target: Any) -> Dict[str, float]:
        preds, labels = predictions_and_targets(output, target)
        right = preds == labels
        value = right.all(axis=1).mean() if self.base == "sample" else right.mean()
        return {"AccuracyScore": float(value)}


@METRICS.register
class MultiLabelMAP(EpochMetric):
    """Mean over classes (with at least one positive) of the average precision: ``MultiLabelMAP``.

    Per class, samples are ranked by sigmoid score (ties keep PaddleClas's order: batch by
    batch, within a batch by descending ``np.argsort``); precision and recall follow the
    ranking. ``integral`` sums precision x recall gain at every recall step (gains of at
    most 1e-6 are skipped, as in PaddleClas / PaddleDetection); ``11point`` averages the
    best precision at recall >= 0, 0.1, ..., 1 with PaddleDetection's scan.

    Args:
        map_type: "integral" (default) or "11point".
    """

    def __init__(self, map_type: str = "integral"):
        super().__init__()
        if map_type not in ("integral", "11point"):
            raise ConfigError("map_type", f"must be 'integral' or '11point', got {map_type!r}")
        self.map_type = map_type

    def compute(self) -> Dict[str, float]:
        scored = [(sigmoid32(logits), first_label_row(labels)) for logits, labels in self.batches]
        if not scored:
            raise ValueError("MultiLabelMAP: no batch was evaluated")
        total, counted = 0.0, 0
        for c in range(scored[0][0].shape[1]):
            hits = _ranked_hits(scored, c)
            if hits.any():
                total += _average_precision(hits, self.map_type)
                counted += 1
        return {"MultiLabelMAP": total / counted if counted else 0.0}


def _ranked_hits(scored: List[tuple], c: int) -> np.ndarray:
    """Whether each sample, ranked by class ``c``'s score, is a positive of ``c``."""
    scores, labels = [], []
    for batch_scores, batch_labels in scored:
        order = np.argsort(batch_scores[:, c])[::-1]
        scores.append(batch_scores[order, c])
        labels.append(batch_labels[order, c])
    scores, labels = np.concatenate(scores), np.concatenate(labels)
    ranking = np.argsort(-scores, kind="stable")   # descending; equal scores keep the order above
    return labels[ranking].astype(np.int64) == 1   # PaddleClas: int(label) == 1


def _average_precision(hits: np.ndarray, map_type: str) -> float:
    true_pos = np.cumsum(hits)
    precision = true_pos / np.arange(1, len(hits) + 1)
    recall = true_pos / float(true_pos[-1])
    if map_type == "integral":
        ap, previous = 0.0, 0.0
        for i in np.flatnonzero(hits):   # recall grows only at positives
            gain = abs(recall[i] - previous)
            if gain > 1e-6:
                ap += precision[i] * gain
                previous = recall[i]
        return float(ap)
    return _eleven_point(precision, recall)


def _eleven_point(precision: np.ndarray, recall: np.ndarray) -> float:
    """PaddleDetection's 11-point AP, scan included.

    For levels 1.0, 0.9, ..., 0 it scans down from where the previous level stopped while
    recall >= level, keeping the best precision, and carries that best to the next level
    when it stops early. A scan that reaches the first sample does not carry (and the
    next level rescans from the same place), which this reproduces.
    """
    best = [0.0] * 11
    start = len(recall) - 1
    for j in range(10, -1, -1):
        first = int(np.searchsorted(recall, j / 10.0, side="left"))   # first index with recall >= level
        if first <= start:
            best[j] = max(best[j], float(precision[first:start + 1].max()))
            stop = first - 1
        else:
            stop = start
        if stop >= 0:
            start = stop
            if j > 0:
                best[j - 1] = best[j]
    return sum(best) / 11.0
