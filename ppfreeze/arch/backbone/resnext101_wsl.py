"""ResNeXt101_32x{8,16,32,48}d_wsl (Mahajan et al. 2018, weakly supervised Instagram pretraining),
PaddleClas's ``model_zoo/resnext101_wsl.py`` layout:

    _conv_stem._conv.weight, _conv_stem._bn.*                  7x7 stem, then _pool (max)
    _conv<s>_<i>._conv0 / _conv1 / _conv2 / [_short._conv] . _conv | _bn . ...   s = 1..4
    _out.weight [2048, class_num], _out.bias

Bottlenecks with 32 groups of ``width`` channels in the 3x3 conv (``32 * width * 2**s`` wide) and
outputs of 256..2048 channels.  These are large (88M to 829M parameters).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..base import ArchModel
from ..registry import MODELS
from .common import check_class_num

DEPTHS = (3, 4, 23, 3)
OUT_CHANNELS = (256, 512, 1024, 2048)


class ConvBN(nn.Layer):
    """Conv -> BN (-> ReLU) named ``_conv`` / ``_bn``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
                 act: bool = False):
        super().__init__()
        self._conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                               padding=(kernel_size - 1) // 2, groups=groups, bias_attr=False)
        self._bn = nn.BatchNorm2D(out_channels)
        self.act = act

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._bn(self._conv(x))
        return F.relu(x) if self.act else x


class ShortCut(nn.Layer):
    """Identity, or a strided 1x1 ConvBN (``_conv``) when the width or resolution changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.project = in_channels != out_channels or stride != 1
        if self.project:
            self._conv = ConvBN(in_channels, out_channels, 1, stride=stride)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self._conv(x) if self.project else x


class BottleneckBlock(nn.Layer):
    """1x1 -> 3x3 (``cardinality`` groups, strided) -> 1x1, plus the shortcut."""

    def __init__(self, in_channels: int, width: int, out_channels: int, stride: int, cardinality: int):
        super().__init__()
        self._conv0 = ConvBN(in_channels, width, 1, act=True)
        self._conv1 = ConvBN(width, width, 3, stride=stride, groups=cardinality, act=True)
        self._conv2 = ConvBN(width, out_channels, 1)
        self._short = ShortCut(in_channels, out_channels, stride)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.relu(self._conv2(self._conv1(self._conv0(x))) + self._short(x))


class ResNeXt101WSL(ArchModel):
    """ResNeXt101 32xNd (WSL); subclasses fix ``width``.

    Args:
        class_num: classifier width (PaddleClas's class takes no other argument).
    """
    cardinality: int = 32
    width: int = 8

    def __init__(self, class_num: int = 1000):
        super().__init__()
        class_num = check_class_num(class_num)
        self._conv_stem = ConvBN(3, 64, 7, stride=2, act=True)
        self._pool = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)
        stages: Dict[str, List[str]] = OrderedDict(stem=["_conv_stem", "_pool"])
        in_channels = 64
        for s, (num_blocks, out_channels) in enumerate(zip(DEPTHS, OUT_CHANNELS)):
            width = self.cardinality * self.width * 2 ** s
            names = [f"_conv{s + 1}_{i}" for i in range(num_blocks)]
            for i, name in enumerate(names):
                self.add_sublayer(name, BottleneckBlock(in_channels, width, out_channels,
                                                        stride=2 if i == 0 and s > 0 else 1,
                                                        cardinality=self.cardinality))
                in_channels = out_channels
            stages[f"stage{s + 1}"] = names
        self._avg_pool = nn.AdaptiveAvgPool2D(1)
        self._out = nn.Linear(in_channels, class_num)
        stages["head"] = ["_avg_pool", "_out"]

        self.class_num = class_num
        self.num_features = in_channels
        self.stages = stages
        self._blocks = [name for stage in list(stages.values())[1:-1] for name in stage]

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._pool(self._conv_stem(x))
        for name in self._blocks:
            x = getattr(self, name)(x)
        x = paddle.flatten(self._avg_pool(x), start_axis=1)
        return self._out(x)


@MODELS.register
class ResNeXt101_32x8d_wsl(ResNeXt101WSL):
    width = 8


@MODELS.register
class ResNeXt101_32x16d_wsl(ResNeXt101WSL):
    width = 16


@MODELS.register
class ResNeXt101_32x32d_wsl(ResNeXt101WSL):
    width = 32


@MODELS.register
class ResNeXt101_32x48d_wsl(ResNeXt101WSL):
    width = 48
