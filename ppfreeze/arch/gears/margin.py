"""Margin heads for metric learning: cosine logits with a margin on the true class.

All three keep one weight ``[embedding_size, class_num]`` (state dict key ``weight``, the
PaddleClas layout) and compare L2-normalised features with L2-normalised class vectors.
The margin needs the label, so in training ``RecModel`` passes it (``needs_label``).
Without a label or outside training (evaluation, export) a head returns the cosines themselves,
unscaled, as PaddleClas's heads do (its retrieval and classification evaluation read those).

- ``ArcMargin`` (ArcFace, Deng et al. 2019): ``cos(theta + m)`` on the true class.
- ``CosMargin`` (CosFace, Wang et al. 2018): ``cos(theta) - m`` on the true class.
- ``CircleMargin`` (Circle loss, Sun et al. 2020): self-paced weights on positive/negative scores.
"""
from __future__ import annotations

import math
from typing import Optional

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .registry import GEARS


class CosineHead(nn.Layer):
    """Shared part of the margin heads: the class weight and the cosine logits."""
    needs_label = True

    def __init__(self, embedding_size: int, class_num: int, margin: float, scale: float):
        super().__init__()
        self.embedding_size = int(embedding_size)
        self.class_num = int(class_num)
        self.margin = float(margin)
        self.scale = float(scale)
        self.weight = self.create_parameter([self.embedding_size, self.class_num],
                                            default_initializer=nn.initializer.XavierNormal())

    def cosine(self, x: paddle.Tensor) -> paddle.Tensor:
        """Cosine similarity ``[N, class_num]`` between features and class vectors."""
        return paddle.matmul(F.normalize(x, axis=1), F.normalize(self.weight, axis=0))

    def forward(self, x: paddle.Tensor, label: Optional[paddle.Tensor] = None) -> paddle.Tensor:
        cos = self.cosine(x)
        if label is None or not self.training:
            return cos
        one_hot = F.one_hot(label.reshape([-1]).astype("int64"), self.class_num)
        return self.margin_logits(cos, one_hot) * self.scale

    def margin_logits(self, cos: paddle.Tensor, one_hot: paddle.Tensor) -> paddle.Tensor:
        """Unscaled training logits given the cosines and the one-hot labels."""
        raise NotImplementedError


@GEARS.register
class ArcMargin(CosineHead):
    """Additive angular margin. ``easy_margin`` applies it only where ``cos > 0``; otherwise,
    past ``theta + m > pi`` (where ``cos(theta + m)`` would rise again) ``cos - m * sin(m)`` is used."""

    def __init__(self, embedding_size: int, class_num: int, margin: float = 0.5, scale: float = 80.0,
                 easy_margin: bool = False):
        super().__init__(embedding_size, class_num, margin, scale)
        self.easy_margin = bool(easy_margin)

    def margin_logits(self, cos: paddle.Tensor, one_hot: paddle.Tensor) -> paddle.Tensor:
        m = self.margin
        sin = paddle.sqrt((1.0 - cos.square()).clip(min=1e-6))
        cos_plus_m = cos * math.cos(m) - sin * math.sin(m)
        if self.easy_margin:
            target = paddle.where(cos > 0, cos_plus_m, cos)
        else:
            target = paddle.where(cos > math.cos(math.pi - m), cos_plus_m, cos - math.sin(m) * m)
        return one_hot * target + (1.0 - one_hot) * cos


@GEARS.register
class CosMargin(CosineHead):
    """Additive cosine margin."""

    def __init__(self, embedding_size: int, class_num: int, margin: float = 0.35, scale: float = 64.0):
        super().__init__(embedding_size, class_num, margin, scale)

    def margin_logits(self, cos: paddle.Tensor, one_hot: paddle.Tensor) -> paddle.Tensor:
        return cos - one_hot * self.margin


@GEARS.register
class CircleMargin(CosineHead):
    """Circle-loss logits: positives pulled towards ``1 - m``, negatives towards ``m``, each
    weighted by how far it is from its optimum (weights are constants, not differentiated)."""

    def __init__(self, embedding_size: int, class_num: int, margin: float, scale: float):
        super().__init__(embedding_size, class_num, margin, scale)

    def margin_logits(self, cos: paddle.Tensor, one_hot: paddle.Tensor) -> paddle.Tensor:
        m = self.margin
        alpha_p = (1.0 + m - cos.detach()).clip(min=0.0)
        alpha_n = (cos.detach() + m).clip(min=0.0)
        return one_hot * alpha_p * (cos - (1.0 - m)) + (1.0 - one_hot) * alpha_n * (cos - m)
