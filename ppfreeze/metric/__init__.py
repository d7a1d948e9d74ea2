"""Metrics: registry, TopkAcc, the metric list and its epoch accumulator."""
from .registry import METRICS
from .topk import GoogLeNetTopkAcc, TopkAcc
from .combined import CombinedMetric, MetricAccumulator, build_metrics

__all__ = ["METRICS", "TopkAcc", "GoogLeNetTopkAcc", "CombinedMetric", "MetricAccumulator", "build_metrics"]

