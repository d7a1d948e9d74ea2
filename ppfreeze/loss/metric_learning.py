"""Pair-based metric-learning losses of PaddleClas's retrieval configs, on cosine similarities.

- ``TripletAngularMarginLoss``: batch-hard triplets on similarities (GeneralRecognitionV2).
- ``PairwiseCosface``: the pairwise form of CosFace from the Circle Loss paper (Logo re-id).
- ``ContrastiveLoss`` and ``ContrastiveLoss_XBM``: contrastive loss, the latter also against a
  cross-batch memory of earlier batches (Wang et al. 2020, "Cross-Batch Memory for Embedding
  Learning"; PaddleClas's metric_learning config).

Every loss reads ``output[feature_from]`` (default ``features``) and the labels ``[N]`` / ``[N, 1]``.
"""
from __future__ import annotations

from typing import Dict, Tuple, Union

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..config.errors import ConfigError
from .registry import LOSSES

ModelOutput = Union[paddle.Tensor, Dict[str, paddle.Tensor]]
REDUCTIONS = ("mean", "sum")


def features_of(output: ModelOutput, feature_from: str, loss: str) -> paddle.Tensor:
    """``output[feature_from]`` of a dict output (a tensor output is the features)."""
    if not isinstance(output, dict):
        return output
    if feature_from not in output:
        raise KeyError(f"{loss}: the model output has no '{feature_from}' (keys: {sorted(output)}); "
                       f"set feature_from to one of them")
    return output[feature_from]


def _same_label(labels_q: paddle.Tensor, labels_k: paddle.Tensor) -> paddle.Tensor:
    return labels_q.reshape([-1, 1]) == labels_k.reshape([1, -1])


@LOSSES.register
class TripletAngularMarginLoss(nn.Layer):
    """Batch-hard triplets on cosine similarity: ``relu(s_an - s_ap + margin)`` per anchor, where
    ``s_ap`` is its least similar same-label sample (itself included) and ``s_an`` its most similar
    other-label sample (PaddleClas ``TripletAngularMarginLoss``).

    Args:
        margin: required similarity gap.
        normalize_feature: L2-normalise the features (similarities are then cosines).
        reduction: ``mean`` or ``sum`` over anchors.
        add_absolute: add ``absolute_loss_weight * (mean(a_n) + mean(relu(ap_value - s_ap)))`` where
            ``a_n = s_an - an_value`` when positive and, as in PaddleClas, 1 otherwise (a constant:
            it changes the loss value, not the gradient).
        absolute_loss_weight, ap_value, an_value: see ``add_absolute``.
        feature_from: model output key of the embedding.

    PaddleClas's class needs as many same-label samples in every row (a P x K batch of distinct
    identities); here any batch works, and P x K batches give PaddleClas's values.
    """

    def __init__(self, margin: float = 0.5, normalize_feature: bool = True, reduction: str = "mean",
                 add_absolute: bool = False, absolute_loss_weight: float = 1.0, ap_value: float = 0.9,
                 an_value: float = 0.5, feature_from: str = "features"):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ConfigError("reduction", f"expected mean or sum, got {reduction!r}")
        self.margin = float(margin)
        self.normalize_feature = bool(normalize_feature)
        self.reduction = reduction
        self.add_absolute = bool(add_absolute)
        self.absolute_loss_weight = float(absolute_loss_weight)
        self.ap_value, self.an_value = float(ap_value), float(an_value)
        self.feature_from = feature_from

    def forward(self, output: ModelOutput, label: paddle.Tensor) -> paddle.Tensor:
        x = features_of(output, self.feature_from, type(self).__name__)
        if self.normalize_feature:
            x = x / x.norm(p=2, axis=-1, keepdim=True)
        sim = paddle.matmul(x, x, transpose_y=True)
        same = _same_label(label, label)
        bound = sim.detach().abs().max() + 1.0   # beyond every real similarity
        s_ap = paddle.where(same, sim, bound.expand_as(sim)).min(axis=1)
        s_an = paddle.where(same, -bound.expand_as(sim), sim).max(axis=1)
        ranking = F.relu(s_an - s_ap + self.margin)
        loss = ranking.mean() if self.reduction == "mean" else ranking.sum()
        if not self.add_absolute:
            return loss
        ap_term = F.relu(self.ap_value - s_ap)
        an_excess = s_an - self.an_value
        an_term = paddle.where(an_excess > 0, an_excess, paddle.ones_like(an_excess))
        return (an_term.mean() + ap_term.mean()) * self.absolute_loss_weight + loss


@LOSSES.register
class PairwiseCosface(nn.Layer):
    """``softplus(logsumexp_p(-gamma * s_p) + logsumexp_n(gamma * (s_n + margin)))`` per sample,
    averaged: ``s_p`` the cosine similarities to its other same-label samples, ``s_n`` to the
    other-label ones (Sun et al. 2020, Circle Loss paper, pairwise CosFace; PaddleClas ``PairwiseCosface``).

    Args:
        margin: cosine margin added to the negative similarities.
        gamma: scale of the similarities.
    """

    _MASKED = -99999999.0   # PaddleClas's stand-in for -inf in the log-sum-exps

    def __init__(self, margin: float, gamma: float):
        super().__init__()
        self.margin = float(margin)
        self.gamma = float(gamma)

    def forward(self, output: ModelOutput, label: paddle.Tensor) -> paddle.Tensor:
        x = F.normalize(features_of(output, "features", type(self).__name__), axis=1)
        sim = paddle.matmul(x, x, transpose_y=True)
        n = sim.shape[0]
        same = _same_label(label, label).astype(sim.dtype)
        positive = same - paddle.eye(n, dtype=sim.dtype)   # a sample is not its own positive
        negative = 1.0 - same
        logit_p = -self.gamma * sim * positive + self._MASKED * (1.0 - positive)
        logit_n = self.gamma * (sim * negative + self.margin) + self._MASKED * (1.0 - negative)
        return F.softplus(paddle.logsumexp(logit_p, axis=1) + paddle.logsumexp(logit_n, axis=1)).mean()


def contrastive_loss(q: paddle.Tensor, q_labels: paddle.Tensor, k: paddle.Tensor, k_labels: paddle.Tensor,
                     margin: float, epsilon: float) -> paddle.Tensor:
    """Mean over queries of ``sum(1 - s)`` over same-label keys (those with ``s < 1 - epsilon``: not
    the query itself) plus ``sum(s)`` over other-label keys with ``s > margin``."""
    sim = paddle.matmul(q, k, transpose_y=True)
    same = _same_label(q_labels, k_labels)
    positive = paddle.logical_and(same, sim < 1.0 - epsilon).astype(sim.dtype)
    negative = paddle.logical_and(paddle.logical_not(same), sim > margin).astype(sim.dtype)
    per_query = ((1.0 - sim) * positive).sum(axis=1) + (sim * negative).sum(axis=1)
    return per_query.mean()


@LOSSES.register
class ContrastiveLoss(nn.Layer):
    """Contrastive loss on cosine similarities within the batch (PaddleClas ``ContrastiveLoss``):
    see :func:`contrastive_loss`. (PaddleClas's class compares unsqueezed ``[N, 1]`` labels with
    each other; here labels are flattened first.)

    Args:
        margin: negatives less similar than this cost nothing.
        embedding_size: the feature width (checked).
        normalize_feature: L2-normalise the features.
        epsilon: same-label pairs at least ``1 - epsilon`` similar (the query itself) cost nothing.
        feature_from: model output key of the embedding.
    """

    def __init__(self, margin: float, embedding_size: int, normalize_feature: bool = True, epsilon: float = 1e-5,
                 feature_from: str = "features"):
        super().__init__()
        self.margin = float(margin)
        self.embedding_size = int(embedding_size)
        self.normalize_feature = bool(normalize_feature)
        self.epsilon = float(epsilon)
        self.feature_from = feature_from

    def _features(self, output: ModelOutput) -> paddle.Tensor:
        x = features_of(output, self.feature_from, type(self).__name__)
        if x.shape[-1] != self.embedding_size:
            raise ConfigError("embedding_size", f"is {self.embedding_size}, but the features are {x.shape[-1]}-d")
        return F.normalize(x, p=2, axis=1) if self.normalize_feature else x

    def forward(self, output: ModelOutput, label: paddle.Tensor) -> paddle.Tensor:
        x = self._features(output)
        labels = label.reshape([-1])
        return contrastive_loss(x, labels, x, labels, self.margin, self.epsilon)


class CrossBatchMemory:
    """A first-in first-out bank of the last ``size`` (detached) features and labels.

    As in PaddleClas, a batch that does not fit after the write position fills the last slots of
    the bank and the position restarts at 0. The bank is training state outside the model: it is not
    saved in checkpoints, so a resumed run starts with an empty bank.
    """

    def __init__(self, size: int, embedding_size: int):
        self.size = int(size)
        self.feats = paddle.zeros([self.size, int(embedding_size)])
        self.labels = paddle.zeros([self.size], dtype="int64")
        self.ptr = 0
        self.full = False

    def enqueue_dequeue(self, feats: paddle.Tensor, labels: paddle.Tensor) -> None:
        """Store a batch, dropping the oldest entries."""
        n = feats.shape[0]
        if n > self.size:
            raise ConfigError("xbm_size", f"is {self.size}, smaller than a batch of {n}")
        if self.ptr + n > self.size:
            self.feats[-n:] = feats
            self.labels[-n:] = labels
            self.ptr, self.full = 0, True
        else:
            self.feats[self.ptr:self.ptr + n] = feats
            self.labels[self.ptr:self.ptr + n] = labels
            self.ptr += n
            self.full = self.full or self.ptr == self.size

    def get(self) -> Tuple[paddle.Tensor, paddle.Tensor]:
        """The stored features and labels."""
        if self.full:
            return self.feats, self.labels
        return self.feats[:self.ptr], self.labels[:self.ptr]


@LOSSES.register
class ContrastiveLoss_XBM(ContrastiveLoss):
    """:class:`ContrastiveLoss` plus ``xbm_weight`` times the same loss of the batch against a
    :class:`CrossBatchMemory` of the last ``xbm_size`` embeddings, from training step
    ``start_iter + 1`` on (the batch is stored first, as in PaddleClas).

    Args:
        xbm_size: memory size (embeddings).
        xbm_weight: weight of the memory term.
        start_iter: steps before the memory is used.
        margin, embedding_size, epsilon, normalize_feature, feature_from: see :class:`ContrastiveLoss`.
    """

    def __init__(self, xbm_size: int, xbm_weight: float, start_iter: int, margin: float, embedding_size: int,
                 epsilon: float = 1e-5, normalize_feature: bool = True, feature_from: str = "features"):
        super().__init__(margin, embedding_size, normalize_feature, epsilon, feature_from)
        if xbm_size < 1:
            raise ConfigError("xbm_size", f"must be >= 1, got {xbm_size}")
        self.memory = CrossBatchMemory(xbm_size, embedding_size)
        self.xbm_weight = float(xbm_weight)
        self.start_iter = int(start_iter)
        self.steps = 0

    def forward(self, output: ModelOutput, label: paddle.Tensor) -> paddle.Tensor:
        x = self._features(output)
        labels = label.reshape([-1]).astype("int64")
        loss = contrastive_loss(x, labels, x, labels, self.margin, self.epsilon)
        self.steps += 1
        if self.steps > self.start_iter:
            self.memory.enqueue_dequeue(x.detach(), labels)
            bank, bank_labels = self.memory.get()
            loss = loss + self.xbm_weight * contrastive_loss(x, labels, bank, bank_labels, self.margin, self.epsilon)
        return loss
