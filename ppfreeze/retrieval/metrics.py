"""Retrieval metrics (pure numpy): Recall@k, Precision@k and mAP of queries ranked against a gallery.

Conventions shared by both metrics:

- Similarity is cosine by default: features are L2-normalised, then compared by inner product
  (in float64, so identical vectors tie exactly); ``similarity="inner_product"`` compares the
  features as given (PaddleClas's ``Global.feature_normalize: false`` and binarised features).
- Ranking is a stable sort by descending similarity; equal scores keep gallery order
  (lower gallery index first), so results are deterministic.
- With ``exclude_self`` an item never matches itself: gallery entries whose *id* equals
  the query's id are dropped from that query's ranking (by identity, not by score, so a
  duplicate image with another id still counts).  Without ids, query i is gallery item i.
- With cameras (re-id), gallery entries of the query's label taken by the query's camera
  are excluded the same way (the standard Market-1501 protocol; PaddleClas's ``keep_mask``).
- A query with no positive left in the gallery is left out of the average and counted in
  ``num_queries_without_positive``; if no query has a positive the metric is NaN.
"""
from __future__ import annotations

from typing import Dict, Iterator, Optional, Sequence

import numpy as np

SIMILARITIES = ("cosine", "inner_product")
_CHUNK_ELEMENTS = 1 << 22  # rows x gallery similarities held at once (~32 MB of float64)


def recall_at_k(query_feats: np.ndarray, query_labels: Sequence, gallery_feats: np.ndarray,
                gallery_labels: Sequence, ks: Sequence[int] = (1, 5), exclude_self: bool = False,
                query_ids: Optional[Sequence] = None, gallery_ids: Optional[Sequence] = None,
                query_cameras: Optional[Sequence] = None, gallery_cameras: Optional[Sequence] = None,
                similarity: str = "cosine") -> Dict[str, float]:
    """Share of queries with a same-label gallery item among their top k, for each k.

    Returns ``{"recall1": ..., "recall5": ..., "num_queries_without_positive": n}``.
    """
    ks = _check_ks(ks)
    hits = {k: 0 for k in ks}
    counted, without = 0, 0
    for relevant in _ranked_relevance(query_feats, query_labels, gallery_feats, gallery_labels,
                                      exclude_self, query_ids, gallery_ids, query_cameras, gallery_cameras,
                                      similarity):
        has_positive = relevant.any(axis=1)
        without += int((~has_positive).sum())
        counted += int(has_positive.sum())
        for k in ks:
            hits[k] += int(relevant[:, :k].any(axis=1).sum())
    result = {f"recall{k}": _ratio(hits[k], counted) for k in ks}
    result["num_queries_without_positive"] = without
    return result


def mean_average_precision(query_feats: np.ndarray, query_labels: Sequence, gallery_feats: np.ndarray,
                           gallery_labels: Sequence, exclude_self: bool = False,
                           query_ids: Optional[Sequence] = None, gallery_ids: Optional[Sequence] = None,
                           query_cameras: Optional[Sequence] = None, gallery_cameras: Optional[Sequence] = None,
                           similarity: str = "cosine") -> Dict[str, float]:
    """Mean over queries of average precision over the full gallery ranking.

    AP of one query = mean, over its positives, of precision at each positive's rank.
    Returns ``{"mAP": ..., "num_queries_without_positive": n}``.
    """
    total_ap, counted, without = 0.0, 0, 0
    for relevant in _ranked_relevance(query_feats, query_labels, gallery_feats, gallery_labels,
                                      exclude_self, query_ids, gallery_ids, query_cameras, gallery_cameras,
                                      similarity):
        n_pos = relevant.sum(axis=1)
        has_positive = n_pos > 0
        ranks = np.arange(1, relevant.shape[1] + 1)
        precision_at_hits = np.where(relevant, np.cumsum(relevant, axis=1) / ranks, 0.0)
        ap = precision_at_hits.sum(axis=1)[has_positive] / n_pos[has_positive]
        total_ap += float(ap.sum())
        counted += int(has_positive.sum())
        without += int((~has_positive).sum())
    return {"mAP": _ratio(total_ap, counted), "num_queries_without_positive": without}


def precision_at_k(query_feats: np.ndarray, query_labels: Sequence, gallery_feats: np.ndarray,
                   gallery_labels: Sequence, ks: Sequence[int] = (1, 5), exclude_self: bool = False,
                   query_ids: Optional[Sequence] = None, gallery_ids: Optional[Sequence] = None,
                   query_cameras: Optional[Sequence] = None, gallery_cameras: Optional[Sequence] = None,
                   similarity: str = "cosine") -> Dict[str, float]:
    """Mean over all queries of the share of positives among the top k (PaddleClas ``Precisionk``).

    Unlike recall and mAP, queries without a positive count (with precision 0).
    Returns ``{"precision@1": ..., "precision@5": ...}``.
    """
    ks = _check_ks(ks)
    totals = {k: 0.0 for k in ks}
    queries = 0
    for relevant in _ranked_relevance(query_feats, query_labels, gallery_feats, gallery_labels,
                                      exclude_self, query_ids, gallery_ids, query_cameras, gallery_cameras,
                                      similarity):
        found = np.cumsum(relevant, axis=1)
        for k in ks:
            if k > relevant.shape[1]:
                raise ValueError(f"precision@{k} needs at least {k} gallery items, got {relevant.shape[1]}")
            totals[k] += float(found[:, k - 1].sum()) / k
        queries += len(relevant)
    return {f"precision@{k}": _ratio(totals[k], queries) for k in ks}


def _ranked_relevance(query_feats, query_labels, gallery_feats, gallery_labels, exclude_self,
                      query_ids, gallery_ids, query_cameras=None, gallery_cameras=None,
                      similarity: str = "cosine") -> Iterator[np.ndarray]:
    """Yield, per chunk of queries, a bool matrix: is the gallery item at each rank a positive?

    Excluded (self) items are ranked last and are never positive, so they cannot affect
    recall or precision at any rank that holds a real item.
    """
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
    normalize = similarity == "cosine"
    q, q_labels = _check_side(query_feats, query_labels, "query", normalize)
    g, g_labels = _check_side(gallery_feats, gallery_labels, "gallery", normalize)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query features are {q.shape[1]}-d but gallery features are {g.shape[1]}-d")
    q_ids, g_ids = _identity_ids(exclude_self, query_ids, gallery_ids, len(q), len(g))
    q_cams, g_cams = _cameras(query_cameras, gallery_cameras, len(q), len(g))
    rows = max(1, _CHUNK_ELEMENTS // max(1, len(g)))
    for start in range(0, len(q), rows):
        stop = min(start + rows, len(q))
        scores = q[start:stop] @ g.T
        positive = q_labels[start:stop, None] == g_labels[None, :]
        excluded = np.zeros_like(positive)
        if exclude_self:
            excluded |= q_ids[start:stop, None] == g_ids[None, :]
        if q_cams is not None:
            excluded |= positive & (q_cams[start:stop, None] == g_cams[None, :])
        scores[excluded] = -np.inf
        positive &= ~excluded
        order = np.argsort(-scores, axis=1, kind="stable")
        yield np.take_along_axis(positive, order, axis=1)


def _check_side(feats, labels, side: str, normalize: bool = True):
    feats = np.asarray(feats, dtype=np.float64)
    labels = np.asarray(labels)
    if feats.ndim != 2:
        raise ValueError(f"{side} features must be 2-D [N, D], got shape {feats.shape}")
    if labels.ndim != 1 or len(labels) != len(feats):
        raise ValueError(f"{side}: {len(feats)} feature rows but labels of shape {labels.shape}")
    if not np.isfinite(feats).all():
        raise ValueError(f"{side} features contain NaN or inf")
    if not normalize:
        return feats, labels
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    return feats / np.where(norms > 0, norms, 1.0), labels


def _identity_ids(exclude_self: bool, query_ids, gallery_ids, n_query: int, n_gallery: int):
    if not exclude_self:
        return None, None
    if query_ids is None and gallery_ids is None:
        if n_query != n_gallery:
            raise ValueError("exclude_self without ids needs query and gallery to be the same set "
                             f"(got {n_query} queries and {n_gallery} gallery items); pass query_ids/gallery_ids")
        return np.arange(n_query), np.arange(n_gallery)
    if query_ids is None or gallery_ids is None:
        raise ValueError("exclude_self needs both query_ids and gallery_ids (or neither)")
    q_ids, g_ids = np.asarray(query_ids), np.asarray(gallery_ids)
    if q_ids.shape != (n_query,) or g_ids.shape != (n_gallery,):
        raise ValueError(f"ids must be 1-D with one entry per item: query_ids {q_ids.shape} for {n_query} "
                         f"queries, gallery_ids {g_ids.shape} for {n_gallery} gallery items")
    return q_ids, g_ids


def _cameras(query_cameras, gallery_cameras, n_query: int, n_gallery: int):
    if query_cameras is None and gallery_cameras is None:
        return None, None
    if query_cameras is None or gallery_cameras is None:
        raise ValueError("camera exclusion needs both query_cameras and gallery_cameras (or neither)")
    q_cams, g_cams = np.asarray(query_cameras).reshape(-1), np.asarray(gallery_cameras).reshape(-1)
    if q_cams.shape != (n_query,) or g_cams.shape != (n_gallery,):
        raise ValueError(f"cameras must give one entry per item: {q_cams.shape} for {n_query} queries, "
                         f"{g_cams.shape} for {n_gallery} gallery items")
    return q_cams, g_cams


def _check_ks(ks: Sequence[int]):
    ks = [ks] if isinstance(ks, (int, np.integer)) else list(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks!r}")
    return sorted(set(int(k) for k in ks))


def _ratio(total: float, count: int) -> float:
    return float(total) / count if count else float("nan")
