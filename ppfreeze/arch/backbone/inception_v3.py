"""Inception v3 (Szegedy et al. 2015), PaddleClas's ``legendary_models/inception_v3.py`` layout.

Parameter names follow the published ``InceptionV3_pretrained.pdparams``:

    inception_stem.conv_1a_3x3|conv_2a_3x3|conv_2b_3x3|conv_3b_1x1|conv_4a_3x3 .conv|.bn
    inception_block_list.<0..10>.<branch>.conv.weight / .bn.*     A x3, B, C x4, D, E x2
    fc.{weight,bias}

Every conv is conv (no bias) -> BN -> ReLU.  Forward: stem -> 11 inception blocks ->
global average pool -> flatten -> dropout (``downscale_in_infer``) -> fc.  The published
model is trained at 299 px; any size from ``min_input_size`` up runs.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Sequence, Tuple, Union

import paddle
import paddle.nn as nn
from paddle import ParamAttr
from paddle.nn.initializer import Uniform

from ..base import ArchModel
from ..registry import MODELS
from .common import check_class_num

Size = Union[int, Tuple[int, int]]

# block kind and its arguments, in forward order (A: in, pool features; C: in, 7x7 channels)
BLOCKS = (("A", 192, 32), ("A", 256, 64), ("A", 288, 64), ("B", 288), ("C", 768, 128), ("C", 768, 160),
          ("C", 768, 160), ("C", 768, 192), ("D", 768), ("E", 1280), ("E", 2048))


class ConvBNLayer(nn.Layer):
    """Conv (no bias) -> BN -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Size, stride: int = 1,
                 padding: Size = 0):
        super().__init__()
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                              bias_attr=False)
        self.bn = nn.BatchNorm2D(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.relu(self.bn(self.conv(x)))


def _avg_pool_3x3() -> nn.AvgPool2D:
    """3x3 stride-1 average pool whose padded zeros count in the mean (``exclusive=False``)."""
    return nn.AvgPool2D(kernel_size=3, stride=1, padding=1, exclusive=False)


class InceptionStem(nn.Layer):
    """3x3/2 -> 3x3 -> 3x3 -> max pool -> 1x1 -> 3x3 -> max pool (the pool layer is used twice)."""

    def __init__(self):
        super().__init__()
        self.conv_1a_3x3 = ConvBNLayer(3, 32, 3, stride=2)
        self.conv_2a_3x3 = ConvBNLayer(32, 32, 3)
        self.conv_2b_3x3 = ConvBNLayer(32, 64, 3, padding=1)
        self.max_pool = nn.MaxPool2D(kernel_size=3, stride=2, padding=0)
        self.conv_3b_1x1 = ConvBNLayer(64, 80, 1)
        self.conv_4a_3x3 = ConvBNLayer(80, 192, 3)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.max_pool(self.conv_2b_3x3(self.conv_2a_3x3(self.conv_1a_3x3(x))))
        return self.max_pool(self.conv_4a_3x3(self.conv_3b_1x1(x)))


class InceptionA(nn.Layer):
    """35x35 module: 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg pool -> 1x1."""

    def __init__(self, in_channels: int, pool_features: int):
        super().__init__()
        self.branch1x1 = ConvBNLayer(in_channels, 64, 1)
        self.branch5x5_1 = ConvBNLayer(in_channels, 48, 1)
        self.branch5x5_2 = ConvBNLayer(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBNLayer(in_channels, 64, 1)
        self.branch3x3dbl_2 = ConvBNLayer(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBNLayer(96, 96, 3, padding=1)
        self.branch_pool = _avg_pool_3x3()
        self.branch_pool_conv = ConvBNLayer(in_channels, pool_features, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return paddle.concat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool_conv(self.branch_pool(x)),
        ], axis=1)


class InceptionB(nn.Layer):
    """35 -> 17 reduction: 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | max pool/2."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = ConvBNLayer(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBNLayer(in_channels, 64, 1)
        self.branch3x3dbl_2 = ConvBNLayer(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBNLayer(96, 96, 3, stride=2)
        self.branch_pool = nn.MaxPool2D(kernel_size=3, stride=2)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return paddle.concat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(x),
        ], axis=1)


class InceptionC(nn.Layer):
    """17x17 module with factorised 7x7 convs (1x7 / 7x1)."""

    def __init__(self, in_channels: int, c7: int):
        super().__init__()
        self.branch1x1 = ConvBNLayer(in_channels, 192, 1)
        self.branch7x7_1 = ConvBNLayer(in_channels, c7, 1)
        self.branch7x7_2 = ConvBNLayer(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBNLayer(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBNLayer(in_channels, c7, 1)
        self.branch7x7dbl_2 = ConvBNLayer(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBNLayer(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBNLayer(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBNLayer(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _avg_pool_3x3()
        self.branch_pool_conv = ConvBNLayer(in_channels, 192, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        dbl = self.branch7x7dbl_2(self.branch7x7dbl_1(x))
        dbl = self.branch7x7dbl_5(self.branch7x7dbl_4(self.branch7x7dbl_3(dbl)))
        return paddle.concat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            dbl,
            self.branch_pool_conv(self.branch_pool(x)),
        ], axis=1)


class InceptionD(nn.Layer):
    """17 -> 8 reduction: 1x1 -> 3x3/2 | 1x1 -> 1x7 -> 7x1 -> 3x3/2 | max pool/2."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3_1 = ConvBNLayer(in_channels, 192, 1)
        self.branch3x3_2 = ConvBNLayer(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBNLayer(in_channels, 192, 1)
        self.branch7x7x3_2 = ConvBNLayer(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBNLayer(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBNLayer(192, 192, 3, stride=2)
        self.branch_pool = nn.MaxPool2D(kernel_size=3, stride=2)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        b7 = self.branch7x7x3_2(self.branch7x7x3_1(x))
        return paddle.concat([
            self.branch3x3_2(self.branch3x3_1(x)),
            self.branch7x7x3_4(self.branch7x7x3_3(b7)),
            self.branch_pool(x),
        ], axis=1)


class InceptionE(nn.Layer):
    """8x8 module whose 3x3 branches split into parallel 1x3 and 3x1 convs."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch1x1 = ConvBNLayer(in_channels, 320, 1)
        self.branch3x3_1 = ConvBNLayer(in_channels, 384, 1)
        self.branch3x3_2a = ConvBNLayer(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBNLayer(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBNLayer(in_channels, 448, 1)
        self.branch3x3dbl_2 = ConvBNLayer(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBNLayer(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBNLayer(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _avg_pool_3x3()
        self.branch_pool_conv = ConvBNLayer(in_channels, 192, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        b3 = self.branch3x3_1(x)
        dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return paddle.concat([
            self.branch1x1(x),
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(dbl), self.branch3x3dbl_3b(dbl),
            self.branch_pool_conv(self.branch_pool(x)),
        ], axis=1)


BLOCK_TYPES = {"A": InceptionA, "B": InceptionB, "C": InceptionC, "D": InceptionD, "E": InceptionE}


def _block_units(first: int, last: int) -> Sequence[str]:
    return [f"inception_block_list.{i}" for i in range(first, last + 1)]


@MODELS.register
class InceptionV3(ArchModel):
    """Inception v3 (no auxiliary head, as in PaddleClas).

    Args:
        class_num: classifier width.

    Stages follow the resolution: stem, stage1 (three A blocks, 35x35 at 299 px), stage2 (B
    reduction + four C blocks, 17x17), stage3 (D reduction + two E blocks, 8x8), head.
    """
    min_input_size = 59  # smaller inputs leave an empty map after the 17 -> 8 reduction

    def __init__(self, class_num: int = 1000):
        super().__init__()
        class_num = check_class_num(class_num)
        self.inception_stem = InceptionStem()
        self.inception_block_list = nn.LayerList([BLOCK_TYPES[kind](*args) for kind, *args in BLOCKS])
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.flatten = nn.Flatten(start_axis=1, stop_axis=-1)
        self.dropout = nn.Dropout(p=0.2, mode="downscale_in_infer")
        bound = 1.0 / math.sqrt(2048)
        self.fc = nn.Linear(2048, class_num, weight_attr=ParamAttr(initializer=Uniform(-bound, bound)))

        self.class_num = class_num
        self.num_features = 2048
        self.stages = OrderedDict(stem=["inception_stem"], stage1=_block_units(0, 2), stage2=_block_units(3, 7),
                                  stage3=_block_units(8, 10), head=["avg_pool", "flatten", "dropout", "fc"])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.inception_stem(x)
        for block in self.inception_block_list:
            x = block(x)
        x = self.flatten(self.avg_pool(x))
        return self.fc(self.dropout(x))
