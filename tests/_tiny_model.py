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
