"""Retrieval metrics for ``Metric.Eval`` (``Global.eval_mode: retrieval``): ``Recallk`` and ``mAP``.

They are computed from whole embedded query / gallery sets (:class:`EmbeddedSet`), not per
batch; ``ppfreeze.engine.evaluation`` embeds the sets and calls them. The math lives in
:mod:`ppfreeze.retrieval.metrics`. No paddle import: only numpy.
Recallk, Precisionk and mAP are supported. When the datasets yield cameras (``(image, label,
camera)`` items: Market1501, DukeMTMC, VeriWild lists with a third column), gallery images of
the query's label taken by the query's camera are excluded (the re-id protocol).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from ..config.errors import ConfigError
from ..metric.registry import METRICS
from ..utils.builder import build_list
from .metrics import mean_average_precision, precision_at_k, recall_at_k

logger = logging.getLogger("ppfreeze")


@dataclass
class EmbeddedSet:
    """Features ``[N, D]`` (float32), labels ``[N]`` and cameras ``[N]`` (or None) of one evaluation set."""
    features: np.ndarray
    labels: np.ndarray
    cameras: Optional[np.ndarray] = None


def _check_descending(descending: Any) -> None:
    # PaddleClas's argument; similarities here are cosine, so only descending order ranks best first
    if descending is not True:
        raise ConfigError("descending", f"must be true (ranking by cosine similarity, best first), got {descending!r}")


def _check_topk(topk: Union[int, Sequence[int]]) -> List[int]:
    ks = [topk] if isinstance(topk, int) else list(topk)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ConfigError("topk", f"expected a positive integer or a list of them, got {topk!r}")
    return ks


class RetrievalMetric:
    """A ``Metric.Eval`` entry computed from whole query/gallery sets, not per batch."""

    def compute(self, query: EmbeddedSet, gallery: EmbeddedSet, exclude_self: bool,
                similarity: str = "cosine") -> Dict[str, float]:
        """Metric values for ``query`` ranked against ``gallery`` (``similarity``: cosine or inner_product)."""
        raise NotImplementedError

    @staticmethod
    def exclusions(query: EmbeddedSet, gallery: EmbeddedSet, exclude_self: bool) -> Dict[str, Any]:
        """Keyword arguments of the metric functions: self and same-camera exclusion."""
        kwargs: Dict[str, Any] = {"exclude_self": exclude_self}
        if query.cameras is not None and gallery.cameras is not None:
            kwargs.update(query_cameras=query.cameras, gallery_cameras=gallery.cameras)
        return kwargs

    def __call__(self, output: Any, label: Any) -> Dict[str, float]:
        # reached when a retrieval metric is listed for classification evaluation
        raise ConfigError("Metric.Eval", f"{type(self).__name__} is a retrieval metric",
                          "set Global.eval_mode: retrieval, or use TopkAcc for classification")


class TopkRetrievalMetric(RetrievalMetric):
    """A retrieval metric at each of the top ``k`` ranks: ``at_k`` (a :mod:`ppfreeze.retrieval.metrics`
    function) computes it, ``result_name`` names each value (``{k}`` is replaced by k)."""

    at_k: Callable[..., Dict[str, float]]
    result_name: str

    def __init__(self, topk: Union[int, Sequence[int]] = (1, 5), descending: bool = True):
        self.topk = _check_topk(topk)
        _check_descending(descending)

    def compute(self, query: EmbeddedSet, gallery: EmbeddedSet, exclude_self: bool,
                similarity: str = "cosine") -> Dict[str, float]:
        result = self.at_k(query.features, query.labels, gallery.features, gallery.labels, self.topk,
                           **self.exclusions(query, gallery, exclude_self), similarity=similarity)
        names = [self.result_name.format(k=k) for k in self.topk]
        return {name: result[name] for name in names}


@METRICS.register
class Recallk(TopkRetrievalMetric):
    """Share of queries with a same-label gallery item among the top k: ``recall1``, ``recall5``, ...

    Args:
        topk: k or a list of them.
        descending: PaddleClas's ranking order; only true (best similarity first) is meaningful.
    """

    at_k = staticmethod(recall_at_k)
    result_name = "recall{k}"


@METRICS.register
class Precisionk(TopkRetrievalMetric):
    """Mean share of positives among each query's top k: ``precision@1``, ``precision@5``, ...

    Args:
        topk: k or a list of them.
        descending: PaddleClas's ranking order; only true is meaningful.
    """

    at_k = staticmethod(precision_at_k)
    result_name = "precision@{k}"


@METRICS.register(name="mAP")
class MeanAveragePrecision(RetrievalMetric):
    """Mean average precision over the full gallery ranking: ``mAP``.

    Args:
        descending: PaddleClas's ranking order; only true is meaningful.
    """

    def __init__(self, descending: bool = True):
        _check_descending(descending)

    def compute(self, query: EmbeddedSet, gallery: EmbeddedSet, exclude_self: bool,
                similarity: str = "cosine") -> Dict[str, float]:
        result = mean_average_precision(query.features, query.labels, gallery.features, gallery.labels,
                                        **self.exclusions(query, gallery, exclude_self), similarity=similarity)
        return {"mAP": result["mAP"]}


def build_retrieval_metrics(metric_cfgs: Any, key: str) -> List[RetrievalMetric]:
    """The ``Metric.Eval`` list as retrieval metrics; empty or non-retrieval entries are errors."""
    if not metric_cfgs:
        raise ConfigError(key, "no metric configured for retrieval evaluation",
                          "add e.g. Metric: {Eval: [{Recallk: {topk: [1, 5]}}, {mAP: {}}]}")
    metrics = []
    for index, (name, metric) in enumerate(build_list(METRICS, metric_cfgs, key, "- Recallk: {topk: [1, 5]}")):
        item_key = f"{key}.{index}"
        if not isinstance(metric, RetrievalMetric):
            raise ConfigError(f"{item_key}.{name}", f"{name} is not a retrieval metric",
                              "with Global.eval_mode: retrieval use Recallk, Precisionk and mAP")
        metrics.append(metric)
    return metrics
