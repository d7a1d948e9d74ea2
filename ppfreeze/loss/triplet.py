"""Triplet losses with batch-hard mining (Hermans et al. 2017, "In Defense of the Triplet Loss").

For every anchor in the batch: the farthest same-label sample (hardest positive) and the
closest other-label sample (hardest negative), by Euclidean distance. The loss is
``relu(d_ap - d_an + margin)`` averaged over anchors, or ``softplus(d_ap - d_an)`` with
``soft_margin``. An anchor without another same-label sample uses ``d_ap = 0`` (itself);
anchors without any negative are skipped. Use a P x K sampler so every batch has both.
"""
from __future__ import annotations

from typing import Dict, Optional, Union

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..arch.outputs import primary_output
from ..config.errors import ConfigError
from .registry import LOSSES

ModelOutput = Union[paddle.Tensor, Dict[str, paddle.Tensor]]


def pairwise_distance(x: paddle.Tensor) -> paddle.Tensor:
    """Euclidean distances ``[N, N]``; the clip keeps sqrt's gradient finite at 0."""
    sq = x.square().sum(axis=1, keepdim=True)
    d2 = sq + sq.t() - 2.0 * paddle.matmul(x, x, transpose_y=True)
    return d2.clip(min=1e-12).sqrt()


def hardest_pairs(dist: paddle.Tensor, labels: paddle.Tensor):
    """Per anchor: hardest-positive distance, hardest-negative distance, and whether a negative exists."""
    n = dist.shape[0]
    same = labels.reshape([-1, 1]) == labels.reshape([1, -1])
    other = paddle.eye(n) == 0
    positive = paddle.logical_and(same, other)
    negative = paddle.logical_not(same)
    d_ap = paddle.where(positive, dist, paddle.zeros_like(dist)).max(axis=1)
    # non-negatives get a distance above every real one so min() never picks them
    far = dist.detach().max() + 1.0
    d_an = paddle.where(negative, dist, paddle.full_like(dist, far)).min(axis=1)
    return d_ap, d_an, negative.any(axis=1)


@LOSSES.register
class TripletLoss(nn.Layer):
    """Batch-hard triplet loss on ``output[feature_from]`` (PaddleClas ``TripletLoss``: margin 1.0,
    raw features).

    Args:
        margin: required gap between hardest negative and hardest positive distance.
        normalize_feature: L2-normalise features first (distances then lie in [0, 2]).
        feature_from: model output key holding the embedding ("features" or "backbone"; PaddleClas's name).
        soft_margin: use ``softplus(d_ap - d_an)`` instead of the hinge (no margin).
        feat_from: older ppfreeze spelling of ``feature_from``, still accepted.
    """

    def __init__(self, margin: float = 1.0, normalize_feature: bool = False, feature_from: str = "features",
                 soft_margin: bool = False, feat_from: Optional[str] = None):
        super().__init__()
        self.margin = float(margin)
        if self.margin < 0:
            raise ConfigError("margin", f"must be >= 0, got {margin}")
        self.normalize_feature = bool(normalize_feature)
        self.feat_from = feat_from if feat_from is not None else feature_from
        self.soft_margin = bool(soft_margin)

    def forward(self, output: ModelOutput, label: paddle.Tensor) -> paddle.Tensor:
        features = self._features(output)
        if self.normalize_feature:
            features = F.normalize(features, axis=1)
        d_ap, d_an, valid = hardest_pairs(pairwise_distance(features), label.reshape([-1]))
        gap = d_ap - d_an
        per_anchor = F.softplus(gap) if self.soft_margin else F.relu(gap + self.margin)
        weights = valid.astype(per_anchor.dtype)
        # 0 (with a graph) when no anchor has a negative, e.g. a batch of one identity
        return (per_anchor * weights).sum() / weights.sum().clip(min=1.0)

    def _features(self, output: ModelOutput) -> paddle.Tensor:
        output = primary_output(output)
        if not isinstance(output, dict):
            return output
        if self.feat_from not in output:
            raise KeyError(f"{type(self).__name__}: the model output has no '{self.feat_from}' "
                           f"(keys: {sorted(output)}); set feat_from to one of them")
        return output[self.feat_from]


@LOSSES.register
class TripletLossV2(TripletLoss):
    """PaddleClas ``TripletLossV2``: the same loss with margin 0.5 on L2-normalised features
    (``feature_from`` defaults to "features", as in PaddleClas; its re-id configs pass "backbone")."""

    def __init__(self, margin: float = 0.5, normalize_feature: bool = True, feature_from: str = "features",
                 soft_margin: bool = False, feat_from: Optional[str] = None):
        super().__init__(margin, normalize_feature, feature_from, soft_margin, feat_from)
