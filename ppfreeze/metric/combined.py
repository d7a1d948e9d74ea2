"""The metric list of ``Metric.Train`` / ``Metric.Eval`` and its epoch-level average.

Two kinds of metric share the list: per-batch metrics (``TopkAcc``, ``HammingDistance``...:
a dict of means over the batch, averaged over batches weighted by their size) and
:class:`~ppfreeze.metric.epoch.EpochMetric` s (``TprAtFpr``, ``MultiLabelMAP``,
``ATTRMetric``: computed once from every evaluated sample).
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..utils.builder import build_list, split_component
from .epoch import EpochMetric
from .registry import METRICS

logger = logging.getLogger("ppfreeze")

# Metrics that compare predictions with class ids: meaningless on mixed (soft) labels.
ACCURACY_METRICS = ("TopkAcc",)

MetricFn = Callable[[Any, Any], Dict[str, float]]


class CombinedMetric:
    """Calls each metric on ``(output, label)`` and merges their ``{name: float}`` dicts.

    ``__call__`` (training logs) reports the per-batch metrics only. Evaluation uses
    ``reset`` / ``update`` per batch / ``results`` (see :func:`ppfreeze.engine.evaluation.eval_classification`).
    """

    def __init__(self, named_metrics: List[Tuple[str, MetricFn]]):
        self.named_metrics = list(named_metrics)
        self._keys: Dict[int, List[str]] = {}   # per-batch metric index -> the keys it returned

    def __call__(self, output: Any, label: Any) -> Dict[str, float]:
        result: Dict[str, float] = {}
        for _, metric in self.named_metrics:
            result.update(metric(output, label))
        return result

    @property
    def epoch_metrics(self) -> List[EpochMetric]:
        """The metrics computed over the whole evaluation set."""
        return [m for _, m in self.named_metrics if isinstance(m, EpochMetric)]

    def reset(self) -> None:
        """Start an evaluation: epoch metrics forget their stored batches."""
        for metric in self.epoch_metrics:
            metric.reset()
        self._keys.clear()

    def update(self, output: Any, label: Any) -> Dict[str, float]:
        """One evaluation batch: epoch metrics store it; returns the per-batch metrics' values."""
        result: Dict[str, float] = {}
        for index, (_, metric) in enumerate(self.named_metrics):
            if isinstance(metric, EpochMetric):
                metric.update(output, label)
                continue
            values = metric(output, label)
            self._keys.setdefault(index, list(values))
            result.update(values)
        return result

    def results(self, batch_averages: Dict[str, float]) -> Dict[str, float]:
        """Every metric's value in list order: per-batch metrics from ``batch_averages``, epoch metrics computed.

        The order matters: the first key selects the best model (PaddleClas: the first metric).
        """
        result: Dict[str, float] = {}
        for index, (_, metric) in enumerate(self.named_metrics):
            if isinstance(metric, EpochMetric):
                result.update(metric.compute())
            else:
                result.update({k: batch_averages[k] for k in self._keys.get(index, []) if k in batch_averages})
        return result


class MetricAccumulator:
    """Average of per-batch metric values over an epoch, weighted by batch size."""

    def __init__(self) -> None:
        self._sums: Dict[str, float] = {}
        self._counts: Dict[str, int] = {}

    def update(self, values: Dict[str, float], batch_size: int) -> None:
        """Add one batch's values (each a mean over ``batch_size`` samples)."""
        for name, value in values.items():
            self._sums[name] = self._sums.get(name, 0.0) + float(value) * batch_size
            self._counts[name] = self._counts.get(name, 0) + batch_size

    def average(self) -> Dict[str, float]:
        """Return the sample-weighted mean of every metric seen since the last reset."""
        return {name: self._sums[name] / self._counts[name]
                for name in self._sums if self._counts[name] > 0}

    def reset(self) -> None:
        """Forget everything (call at the start of each epoch)."""
        self._sums.clear()
        self._counts.clear()


def build_metrics(metric_cfgs: Optional[List[Any]], key: str) -> Optional[CombinedMetric]:
    """Build the metrics of a PaddleClas list such as ``[{TopkAcc: {topk: [1, 5]}}]``.

    Returns ``None`` when the list is empty or missing (metrics are optional).
    """
    if not metric_cfgs:
        return None
    named = build_list(METRICS, metric_cfgs, key, "- TopkAcc: {topk: [1, 5]}")
    return CombinedMetric(named)


def drop_accuracy_for_mixed_labels(metric_cfgs: Optional[List[Any]], key: str) -> Optional[List[Any]]:
    """``metric_cfgs`` without accuracy metrics, for training on batch-op (mixup / cutmix) labels.

    PaddleClas removes ``TopkAcc`` from ``Metric.Train`` when ``batch_transform_ops`` are set
    (a mixed label has no single class); so do we, saying so once.
    """
    if not isinstance(metric_cfgs, list):
        return metric_cfgs
    kept, dropped = [], []
    for index, cfg in enumerate(metric_cfgs):
        name, _ = split_component(cfg, f"{key}.{index}")
        if name in ACCURACY_METRICS:
            dropped.append(name)
        else:
            kept.append(cfg)
    if dropped:
        logger.warning("%s: %s not computed in training: batch_transform_ops mix the labels (as PaddleClas, "
                       "accuracy is reported by evaluation only)", key, ", ".join(dropped))
    return kept
