"""Metrics: registry, TopkAcc, multi-label / attribute / binary metrics, the metric list and its accumulator."""
from .registry import METRICS
from .topk import DistillationTopkAcc, TopkAcc
from .epoch import EpochMetric
from .multilabel import AccuracyScore, HammingDistance, MultiLabelMAP
from .attribute import ATTRMetric
from .tpr_at_fpr import TprAtFpr
from .combined import CombinedMetric, MetricAccumulator, build_metrics

__all__ = ["METRICS", "TopkAcc", "DistillationTopkAcc", "EpochMetric", "AccuracyScore", "HammingDistance", "MultiLabelMAP", "ATTRMetric",
           "TprAtFpr", "CombinedMetric", "MetricAccumulator", "build_metrics"]
