"""Attribute recognition metrics (PaddleClas ``ATTRMetric``; Li et al., "Rethinking of Pedestrian
Attribute Recognition", 2020), numpy only.

Label-based: per attribute, the mean of positive and negative recall (``ma``), F1 (of the
attribute's precision and the mean recall, as PaddleClas computes it) and the recalls,
averaged over attributes. Instance-based: per image, accuracy (intersection over
union of the predicted and true attribute sets), precision and recall averaged over images,
and their F1. Targets of -1 (unknown) count as neither positive nor negative.
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from ..config.errors import ConfigError
from .epoch import EpochMetric, first_label_row
from .registry import METRICS

_EPS = 1e-20
ATTR_KEYS = ("ma", "label_f1", "label_pos_recall", "label_neg_recall", "instance_f1", "instance_acc",
             "instance_prec", "instance_recall")


@METRICS.register
class ATTRMetric(EpochMetric):
    """Attribute metrics over the evaluation set: ``ma`` (the model-selection key) and seven more.

    As in PaddleClas, an attribute is predicted present when the model output exceeds
    ``threshold`` -- the raw output (logits in evaluation), not its sigmoid: the default
    0.5 therefore means probability > sigmoid(0.5) = 0.62.

    Args:
        threshold: decision threshold on the model output.
    """

    def __init__(self, threshold: float = 0.5):
        super().__init__()
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise ConfigError("threshold", f"must be a number, got {threshold!r}")
        self.threshold = threshold

    def compute(self) -> Dict[str, float]:
        outputs, targets = self._stacked()
        return attribute_metrics(first_label_row(targets), outputs, self.threshold)


def attribute_metrics(labels: np.ndarray, outputs: np.ndarray, threshold: float) -> Dict[str, float]:
    """The eight attribute metrics of ``[N, C]`` labels (1 / 0 / -1) and outputs."""
    preds = (outputs > threshold).astype(int)
    preds[labels == -1] = -1
    pos, neg = labels == 1, labels == 0
    hit, predicted = preds == 1, preds == 0
    true_pos = (pos & hit).sum(axis=0).astype(float)
    true_neg = (neg & predicted).sum(axis=0).astype(float)
    false_pos = (neg & hit).sum(axis=0).astype(float)
    pos_recall = true_pos / (pos.sum(axis=0) + _EPS)
    neg_recall = true_neg / (neg.sum(axis=0) + _EPS)
    label_prec = true_pos / (true_pos + false_pos + _EPS)
    # PaddleClas pairs each attribute's precision with the recall averaged over attributes
    mean_recall = np.mean(pos_recall)
    label_f1 = np.mean(2 * label_prec * mean_recall / (label_prec + mean_recall + _EPS))

    intersection = (pos & hit).sum(axis=1).astype(float)
    union = (pos | hit).sum(axis=1).astype(float)
    instance_acc = np.mean(intersection / (union + _EPS))
    instance_prec = np.mean(intersection / (hit.sum(axis=1) + _EPS))
    instance_recall = np.mean(intersection / (pos.sum(axis=1) + _EPS))
    # F1 of the averaged precision and recall (PaddleClas's choice, not the mean per-image F1)
    instance_f1 = 2 * instance_prec * instance_recall / (instance_prec + instance_recall + _EPS)
    values = (np.mean((pos_recall + neg_recall) / 2), label_f1, mean_recall, np.mean(neg_recall),
              instance_f1, instance_acc, instance_prec, instance_recall)
    return {key: float(v) for key, v in zip(ATTR_KEYS, values)}
