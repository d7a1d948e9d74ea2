"""Metrics: registry, TopkAcc, the metric list and its epoch accumulator."""
from .registry import METRICS
from .topk import TopkAcc
from .combined import CombinedMetric, MetricAccumulator, build_metrics, drop_accuracy_for_mixed_labels

__all__ = ["METRICS", "TopkAcc", "CombinedMetric", "MetricAccumulator", "build_metrics",
           "drop_accuracy_for_mixed_labels"]

