"""Retrieval evaluation (``Global.eval_mode: retrieval``): Recall@k and mAP on query/gallery sets.

Layout (PaddleClas): ``DataLoader.Eval.Query`` and ``DataLoader.Eval.Gallery`` are loader
sections; ``Metric.Eval`` lists ``Recallk`` (``topk``), ``Precisionk`` (``topk``) and ``mAP``.
Every query is ranked against the gallery by cosine similarity of the model's
``Global.retrieval_feature_from`` output (default ``features``). When Query and Gallery
describe the same dataset, each image is its own best match, so it is excluded from its own
ranking (by index). When the datasets yield cameras (``(image, label, camera)`` items:
Market1501, DukeMTMC, VeriWild lists with a third column), gallery images of the query's
label taken by the query's camera are excluded too (the re-id protocol).

The math lives in :mod:`ppfreeze.retrieval.metrics`; this module extracts features with the
engine's model and turns the config into calls.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import paddle

from ..config.errors import ConfigError
from ..engine.evaluation import eval_loader
from ..metric.registry import METRICS
from ..utils.builder import build_list
from .metrics import mean_average_precision, precision_at_k, recall_at_k

logger = logging.getLogger("ppfreeze")

EVAL_KEY = "DataLoader.Eval"
SIDES = ("Query", "Gallery")


@dataclass
class EmbeddedSet:
    """Features ``[N, D]`` (float32), labels ``[N]`` and cameras ``[N]`` (or None) of one evaluation set."""
    features: np.ndarray
    labels: np.ndarray
    cameras: Optional[np.ndarray] = None


def _check_descending(descending: Any) -> None:
    # PaddleClas's argument; similarities here are cosine, so only descending order ranks best first
    if descending is not True:
        raise ValueError(f"descending must be true (ranking by cosine similarity, best first), got {descending!r}")


def _check_topk(topk: Union[int, Sequence[int]]) -> List[int]:
    ks = [topk] if isinstance(topk, int) else list(topk)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"topk must be a positive integer or a list of them, got {topk!r}")
    return ks


class RetrievalMetric:
    """A ``Metric.Eval`` entry computed from whole query/gallery sets, not per batch."""

    def compute(self, query: EmbeddedSet, gallery: EmbeddedSet, exclude_self: bool) -> Dict[str, float]:
        """Metric values for ``query`` ranked against ``gallery``."""
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


@METRICS.register
class Recallk(RetrievalMetric):
    """Share of queries with a same-label gallery item among the top k: ``recall1``, ``recall5``, ...

    Args:
        topk: k or a list of them.
        descending: PaddleClas's ranking order; only true (best similarity first) is meaningful.
    """

    def __init__(self, topk: Union[int, Sequence[int]] = (1, 5), descending: bool = True):
        self.topk = _check_topk(topk)
        _check_descending(descending)

    def compute(self, query: EmbeddedSet, gallery: EmbeddedSet, exclude_self: bool) -> Dict[str, float]:
        result = recall_at_k(query.features, query.labels, gallery.features, gallery.labels, self.topk,
                             **self.exclusions(query, gallery, exclude_self))
        return {f"recall{k}": result[f"recall{k}"] for k in self.topk}


@METRICS.register
class Precisionk(RetrievalMetric):
    """Mean share of positives among each query's top k: ``precision@1``, ``precision@5``, ...

    Args:
        topk: k or a list of them.
        descending: PaddleClas's ranking order; only true is meaningful.
    """

    def __init__(self, topk: Union[int, Sequence[int]] = (1, 5), descending: bool = True):
        self.topk = _check_topk(topk)
        _check_descending(descending)

    def compute(self, query: EmbeddedSet, gallery: EmbeddedSet, exclude_self: bool) -> Dict[str, float]:
        result = precision_at_k(query.features, query.labels, gallery.features, gallery.labels, self.topk,
                                **self.exclusions(query, gallery, exclude_self))
        return {f"precision@{k}": result[f"precision@{k}"] for k in self.topk}


@METRICS.register(name="mAP")
class MeanAveragePrecision(RetrievalMetric):
    """Mean average precision over the full gallery ranking: ``mAP``.

    Args:
        descending: PaddleClas's ranking order; only true is meaningful.
    """

    def __init__(self, descending: bool = True):
        _check_descending(descending)

    def compute(self, query: EmbeddedSet, gallery: EmbeddedSet, exclude_self: bool) -> Dict[str, float]:
        result = mean_average_precision(query.features, query.labels, gallery.features, gallery.labels,
                                        **self.exclusions(query, gallery, exclude_self))
        return {"mAP": result["mAP"]}


def eval_retrieval(engine: Any) -> Dict[str, float]:
    """Embed ``DataLoader.Eval.Query`` / ``Gallery`` with ``engine.model`` and compute ``Metric.Eval``.

    Returns e.g. ``{"recall1": .., "recall5": .., "mAP": ..}`` in the order of the metric
    list (the engine picks the best model by the first key). Call under ``paddle.no_grad()``
    with the model in eval mode (``ppfreeze.engine.evaluation.evaluate`` does).
    """
    cfg = engine.config
    metrics = build_retrieval_metrics((cfg.get("Metric") or {}).get("Eval"), "Metric.Eval")
    eval_cfg = _eval_sections(cfg.get("DataLoader") or {})
    same_set = eval_cfg["Query"]["dataset"] == eval_cfg["Gallery"]["dataset"]
    _warn_unsupported(engine.glob)
    query = embed_dataset(engine, "Query")
    gallery = query if same_set else embed_dataset(engine, "Gallery")
    results: Dict[str, float] = {}
    for metric in metrics:
        results.update(metric.compute(query, gallery, exclude_self=same_set))
    if any(np.isnan(v) for v in results.values()):
        raise ConfigError(EVAL_KEY, "no query has an image of its label in the gallery, so recall and mAP "
                                    "are undefined", "Query and Gallery must share labels (identities)")
    return results


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


def embed_dataset(engine: Any, side: str) -> EmbeddedSet:
    """Run ``engine.model`` over ``DataLoader.Eval.<side>`` and collect features, labels (and cameras)."""
    feat_from = engine.glob.get("retrieval_feature_from", "features")
    max_steps = engine.glob.get("max_eval_steps")
    features, labels, cameras = [], [], []
    for step, batch in enumerate(eval_loader(engine, ("Eval", side), single_process=True)):
        if max_steps and step >= max_steps:
            break
        features.append(_features_of(engine.model(batch[0]), feat_from).numpy().astype(np.float32))
        labels.append(np.asarray(batch[1]).reshape(-1))
        if len(batch) >= 3:   # (image, label, camera) items
            cameras.append(np.asarray(batch[2]).reshape(-1))
    if not features:
        raise ConfigError(f"{EVAL_KEY}.{side}.dataset", "the evaluation set is empty")
    return EmbeddedSet(np.concatenate(features), np.concatenate(labels),
                       np.concatenate(cameras) if cameras else None)


def _eval_sections(loader_cfg: Dict[str, Any]) -> Dict[str, Any]:
    eval_cfg = loader_cfg.get("Eval")
    if not isinstance(eval_cfg, dict):
        raise ConfigError(EVAL_KEY, "missing: retrieval evaluation needs DataLoader.Eval.Query and .Gallery",
                          "see configs/retrieval/quick_start_rec.yaml")
    for side in SIDES:
        section = eval_cfg.get(side)
        if not isinstance(section, dict) or not isinstance(section.get("dataset"), dict):
            present = ", ".join(k for k in eval_cfg if isinstance(eval_cfg[k], dict)) or "none"
            raise ConfigError(f"{EVAL_KEY}.{side}", f"missing (or without a dataset); sections present: {present}",
                              "retrieval evaluation ranks DataLoader.Eval.Query against DataLoader.Eval.Gallery; "
                              "give both (the same dataset twice for leave-one-out evaluation)")
    return eval_cfg


def _features_of(output: Any, feat_from: str) -> paddle.Tensor:
    if not isinstance(output, dict):
        raise ConfigError("Arch.name", f"retrieval evaluation needs a model that returns a dict of outputs, "
                                       f"got {type(output).__name__}", "use Arch.name: RecModel")
    if feat_from not in output:
        raise ConfigError("Global.retrieval_feature_from", f"the model output has no '{feat_from}'",
                          f"choose one of: {', '.join(sorted(output))}")
    return output[feat_from]


def _warn_unsupported(glob: Dict[str, Any]) -> None:
    if glob.get("feature_normalize", True) is False:
        logger.warning("Global.feature_normalize: false is ignored: retrieval evaluation always ranks by "
                       "cosine similarity (L2-normalised features)")
