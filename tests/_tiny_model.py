"""A tiny backbone for freeze tests: PaddleClas-style names and ``stages`` metadata."""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional

import paddle
from paddle import nn


class ConvBN(nn.Layer):
    """Conv (no bias) + BN + ReLU, names ``conv.weight`` / ``bn._mean`` like PaddleClas."""

    def __init__(self, cin: int, cout: int, stride: int = 1, weight_attr: Optional[paddle.ParamAttr] = None,
                 bn_attr: Optional[paddle.ParamAttr] = None):
        super().__init__()
        self.conv = nn.Conv2D(cin, cout, 3, stride=stride, padding=1, weight_attr=weight_attr, bias_attr=False)
        self.bn = nn.BatchNorm2D(cout, weight_attr=bn_attr, bias_attr=bn_attr)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class TinyNet(nn.Layer):
    """stem (3->8) -> max_pool -> stage1 (blocks.0, blocks.1: 8->8->16) -> stage2 (blocks.2) -> head."""

    stages = OrderedDict([("stem", ["stem", "max_pool"]), ("stage1", ["blocks.0", "blocks.1"]),
                          ("stage2", ["blocks.2"]), ("head", ["avg_pool", "flatten", "fc"])])

    def __init__(self, num_classes: int = 10, frozen_attr_prefix: Optional[str] = None):
        super().__init__()
        # frozen_attr_prefix="stem" builds stem params with ParamAttr(learning_rate=0) (reference for lr_zero).
        attr = paddle.ParamAttr(learning_rate=0.0) if frozen_attr_prefix else None
        self.stem = nn.Sequential(ConvBN(3, 8, weight_attr=attr, bn_attr=attr))
        self.max_pool = nn.MaxPool2D(2)
        self.blocks = nn.LayerList([ConvBN(8, 8), ConvBN(8, 16, stride=2), ConvBN(16, 16)])
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = self.max_pool(self.stem(x))
        for block in self.blocks:
            x = block(x)
        return self.fc(self.flatten(self.avg_pool(x)))


def tiny_model(seed: int = 0, **kwargs) -> TinyNet:
    """A TinyNet with deterministic weights."""
    paddle.seed(seed)
    return TinyNet(**kwargs)


class TinyAttention(nn.Layer):
    """Multi-head self-attention over [B, N, C] tokens (qkv and proj Linear layers, ``num_heads``)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape([b, n, 3, self.num_heads, c // self.num_heads]).transpose([2, 0, 3, 1, 4])
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = paddle.nn.functional.softmax(q.matmul(k.transpose([0, 1, 3, 2])) * (c // self.num_heads) ** -0.5)
        return self.proj(attn.matmul(v).transpose([0, 2, 1, 3]).reshape([b, n, c]))


class TinyBlock(nn.Layer):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = TinyAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 2), nn.GELU(), nn.Linear(dim * 2, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Layer):
    """patch_embed (8x8 patches of a 16x16 image, or of ``image_size``) + cls_token + pos_embed -> 3 blocks
    -> norm -> head."""

    stages = OrderedDict([("stem", ["patch_embed", "cls_token", "pos_embed"]),
                          ("stage1", ["blocks.0", "blocks.1"]), ("stage2", ["blocks.2"]),
                          ("head", ["norm", "head"])])

    def __init__(self, num_classes: int = 5, dim: int = 16, num_heads: int = 2, image_size: int = 16):
        super().__init__()
        self.patch_embed = nn.Conv2D(3, dim, 8, stride=8)
        self.cls_token = self.create_parameter([1, 1, dim], default_initializer=nn.initializer.Normal(std=0.02))
        tokens = 1 + (image_size // 8) ** 2
        self.pos_embed = self.create_parameter([1, tokens, dim], default_initializer=nn.initializer.Normal(std=0.02))
        self.blocks = nn.LayerList([TinyBlock(dim, num_heads) for _ in range(3)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose([0, 2, 1])
        x = paddle.concat([self.cls_token.expand([x.shape[0], -1, -1]), x], axis=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


def tiny_vit(seed: int = 0, **kwargs) -> TinyViT:
    """A TinyViT with deterministic weights (input [N, 3, 16, 16])."""
    paddle.seed(seed)
    return TinyViT(**kwargs)
