"""Metrics: registry, TopkAcc, multi-label / attribute / binary metrics, the metric list and its accumulator."""
from .registry import METRICS
from .topk import DistillationTopkAcc, GoogLeNetTopkAcc, TopkAcc
from .epoch import EpochMetric
from .multilabel import AccuracyScore, HammingDistance, MultiLabelMAP
from .attribute import ATTRMetric
from .tpr_at_fpr import TprAtFpr
from .combined import CombinedMetric, MetricAccumulator, build_metrics, drop_accuracy_for_mixed_labels

__all__ = ["METRICS", "TopkAcc", "GoogLeNetTopkAcc", "DistillationTopkAcc", "EpochMetric", "AccuracyScore",
           "HammingDistance", "MultiLabelMAP", "ATTRMetric", "TprAtFpr", "CombinedMetric", "MetricAccumulator",
           "build_metrics", "drop_accuracy_for_mixed_labels"]
