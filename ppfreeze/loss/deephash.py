"""Deep hashing losses of PaddleClas's DeepHash configs (a RecModel whose ``Tanh`` neck gives codes
in (-1, 1), an FC head classifies them): ``DCHLoss``, ``DSHSDLoss``, ``LCDSHLoss``.

Pairs of samples are similar when their labels are equal (one-hot inner product > 0). Each loss
reads ``output["features"]`` (the codes); ``DSHSDLoss`` also ``output["logits"]``.
"""
from __future__ import annotations

from typing import Dict

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..config.errors import ConfigError
from .registry import LOSSES


def _one_hot(label: paddle.Tensor, n_class: int) -> paddle.Tensor:
    return F.one_hot(label.reshape([-1]).astype("int64"), n_class).astype("float32")


def _positive(value: float, name: str) -> float:
    if not value > 0:
        raise ConfigError(name, f"must be > 0, got {value}")
    return float(value)


@LOSSES.register
class DCHLoss(nn.Layer):
    """Deep Cauchy Hashing (Cao et al. 2018): a Cauchy cross-entropy on the Hamming-like distance
    ``d = K (1 - cos) / 2`` of the codes (cos clipped at 0.99), similar pairs weighted up to balance
    the dissimilar ones, plus ``_lambda`` times the Cauchy quantization loss towards +-1.

    Args:
        gamma: Cauchy scale.
        _lambda: weight of the quantization loss.
        n_class: number of classes (for the one-hot labels).
    """

    def __init__(self, gamma: float, _lambda: float, n_class: int):
        super().__init__()
        self.gamma = _positive(gamma, "gamma")
        self._lambda = float(_lambda)
        self.n_class = int(n_class)

    @staticmethod
    def distance(a: paddle.Tensor, b: paddle.Tensor) -> paddle.Tensor:
        """``K (1 - min(cos, 0.99)) / 2`` for every pair of rows (norms clipped at 1e-4)."""
        norms = paddle.matmul(a.norm(axis=1, keepdim=True), b.norm(axis=1, keepdim=True), transpose_y=True)
        cos = paddle.matmul(a, b, transpose_y=True) / norms.clip(min=0.0001)
        return (1.0 - cos.clip(max=0.99)) * a.shape[1] / 2.0

    def forward(self, output: Dict[str, paddle.Tensor], label: paddle.Tensor) -> paddle.Tensor:
        codes = output["features"]
        onehot = _one_hot(label, self.n_class)
        similar = paddle.matmul(onehot, onehot, transpose_y=True)
        n_similar, total = float(similar.sum()), float(similar.numel())
        if 0 < n_similar < total:   # balance: each kind of pair weighs as much in total
            weight = similar * total / n_similar + (1.0 - similar) * total / (total - n_similar)
        else:
            weight = paddle.ones_like(similar)
        dist = self.distance(codes, codes)
        cauchy = weight * (similar * paddle.log(dist / self.gamma) + paddle.log(1.0 + self.gamma / dist))
        to_one = self.distance(codes.abs(), paddle.ones_like(codes))
        quantization = paddle.log(1.0 + to_one / self.gamma)
        return cauchy.mean() + self._lambda * quantization.mean()


@LOSSES.register
class DSHSDLoss(nn.Layer):
    """Deep Supervised Hashing based on Stable Distribution (Wu et al. 2019): a contrastive term on
    squared code distances (margin ``2 K``) times ``alpha``, plus a classification loss on the logits
    (softmax cross entropy, or per-class sigmoid cross entropy with ``multi_label``).

    Args:
        alpha: weight of the distance term.
        multi_label: sigmoid instead of softmax classification loss.
    """

    def __init__(self, alpha: float, multi_label: bool = False):
        super().__init__()
        self.alpha = float(alpha)
        self.multi_label = bool(multi_label)

    def forward(self, output: Dict[str, paddle.Tensor], label: paddle.Tensor) -> paddle.Tensor:
        codes, logits = output["features"], output["logits"]
        dist = (codes.unsqueeze(1) - codes.unsqueeze(0)).square().sum(axis=2)
        onehot = _one_hot(label, logits.shape[1])
        dissimilar = (paddle.matmul(onehot, onehot, transpose_y=True) == 0).astype("float32")
        margin = 2.0 * codes.shape[1]
        distance_term = ((1.0 - dissimilar) / 2 * dist + dissimilar / 2 * (margin - dist).clip(min=0)).mean()
        if self.multi_label:
            classification = (logits - onehot * logits + paddle.log(1.0 + paddle.exp(-logits))).sum(axis=1)
        else:
            classification = -(F.log_softmax(logits, axis=-1) * onehot).sum(axis=1)
        return classification.mean() + self.alpha * distance_term


@LOSSES.register
class LCDSHLoss(nn.Layer):
    """Locality-Constrained Deep Supervised Hashing (Zhu & Gao 2017): the likelihood of the pair
    similarities ``s = +-1`` under ``sigmoid(<b_i, b_j> / 2)`` of the codes (inner products clipped to
    [-50, 50]), plus ``_lambda`` times the squared gap between those probabilities for the codes and
    for their signs.

    Args:
        n_class: number of classes (for the one-hot labels).
        _lambda: weight of the quantization term.
    """

    def __init__(self, n_class: int, _lambda: float):
        super().__init__()
        self.n_class = int(n_class)
        self._lambda = float(_lambda)

    def forward(self, output: Dict[str, paddle.Tensor], label: paddle.Tensor) -> paddle.Tensor:
        codes = output["features"]
        onehot = _one_hot(label, self.n_class)
        s = 2.0 * (paddle.matmul(onehot, onehot, transpose_y=True) > 0).astype("float32") - 1.0
        inner = (paddle.matmul(codes, codes, transpose_y=True) * 0.5).clip(min=-50, max=50)
        likelihood = paddle.log(1.0 + paddle.exp(-s * inner)).mean()
        signs = codes.sign()
        inner_binary = paddle.matmul(signs, signs, transpose_y=True) * 0.5
        quantization = (F.sigmoid(inner) - F.sigmoid(inner_binary)).square().mean()
        return likelihood + self._lambda * quantization
