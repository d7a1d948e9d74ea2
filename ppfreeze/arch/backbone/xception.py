"""Xception 41/65/71 (Chollet 2016), PaddleClas's ``model_zoo/xception.py`` layout.

Parameter names follow the published ``Xception*_pretrained.pdparams``:

    _entry_flow._conv1|_conv2 ._conv.weight / ._batch_norm.*              stem (3x3 convs, ReLU)
    _entry_flow._conv_<i>._short.weight, ._conv1|_conv2 ._pointwise_conv|_depthwise_conv ._conv|._batch_norm
    _middle_flow._conv_<i>._conv_0|_conv_1|_conv_2 .<separable conv>
    _exit_flow._conv_0 (block), _exit_flow._conv_1|_conv_2 (separable convs), _exit_flow._out

PaddleClas's "separable" conv runs the 1x1 pointwise conv *before* the 3x3 depthwise one
(each followed by BN, no activation); that order is kept.  Forward: entry flow (stem + 3 or
5 downsampling blocks with 1x1 strided shortcuts) -> middle flow (8 or 16 residual blocks)
-> exit flow (a downsampling block, two separable convs + ReLU) -> pool -> flatten -> fc.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import List, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.nn.initializer import Uniform

from ..base import ArchModel
from ..registry import MODELS
from .common import check_class_num

# entry-flow blocks: (in, out, stride, relu first); 3 blocks (41, 65) or 5 blocks (71)
ENTRY_BLOCKS = {
    3: ((64, 128, 2, False), (128, 256, 2, True), (256, 728, 2, True)),
    5: ((64, 128, 2, False), (128, 256, 1, True), (256, 256, 2, True), (256, 728, 1, True), (728, 728, 2, True)),
}


class ConvBNLayer(nn.Layer):
    """'Same' conv (no bias) -> BN -> optional ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
                 relu: bool = False):
        super().__init__()
        self._conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                               padding=(kernel_size - 1) // 2, groups=groups, bias_attr=False)
        self._batch_norm = nn.BatchNorm2D(out_channels)
        self.relu = relu

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._batch_norm(self._conv(x))
        return F.relu(x) if self.relu else x


class SeparableConv(nn.Layer):
    """1x1 pointwise conv + BN, then 3x3 depthwise conv + BN (PaddleClas's order)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self._pointwise_conv = ConvBNLayer(in_channels, out_channels, 1)
        self._depthwise_conv = ConvBNLayer(out_channels, out_channels, 3, groups=out_channels)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self._depthwise_conv(self._pointwise_conv(x))


class EntryFlowBottleneckBlock(nn.Layer):
    """[ReLU] -> sep conv -> ReLU -> sep conv -> 3x3 max pool (stride), plus a strided 1x1 shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, relu_first: bool):
        super().__init__()
        self.relu_first = relu_first
        self._short = nn.Conv2D(in_channels, out_channels, 1, stride=stride, bias_attr=False)
        self._conv1 = SeparableConv(in_channels, out_channels)
        self._conv2 = SeparableConv(out_channels, out_channels)
        self._pool = nn.MaxPool2D(kernel_size=3, stride=stride, padding=1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        short = self._short(x)
        y = self._conv1(F.relu(x) if self.relu_first else x)
        y = self._pool(self._conv2(F.relu(y)))
        return short + y


class EntryFlow(nn.Layer):
    """Stem convs ``_conv1``, ``_conv2`` and the downsampling blocks ``_conv_<i>``."""

    def __init__(self, block_num: int):
        super().__init__()
        self._conv1 = ConvBNLayer(3, 32, 3, stride=2, relu=True)
        self._conv2 = ConvBNLayer(32, 64, 3, relu=True)
        self.blocks: List[str] = []
        for i, spec in enumerate(ENTRY_BLOCKS[block_num]):
            self.add_sublayer(f"_conv_{i}", EntryFlowBottleneckBlock(*spec))
            self.blocks.append(f"_conv_{i}")

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._conv2(self._conv1(x))
        for name in self.blocks:
            x = self._sub_layers[name](x)
        return x


class MiddleFlowBottleneckBlock(nn.Layer):
    """Three (ReLU -> separable conv) steps plus an identity shortcut, 728 channels."""

    def __init__(self, channels: int = 728):
        super().__init__()
        self._conv_0 = SeparableConv(channels, channels)
        self._conv_1 = SeparableConv(channels, channels)
        self._conv_2 = SeparableConv(channels, channels)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self._conv_2(F.relu(self._conv_1(F.relu(self._conv_0(F.relu(x))))))
        return x + y


class ExitFlowBottleneckBlock(nn.Layer):
    """ReLU -> sep conv -> ReLU -> sep conv -> 3x3/2 max pool, plus a strided 1x1 shortcut."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int):
        super().__init__()
        self._short = nn.Conv2D(in_channels, out_channels, 1, stride=2, bias_attr=False)
        self._conv_1 = SeparableConv(in_channels, mid_channels)
        self._conv_2 = SeparableConv(mid_channels, out_channels)
        self._pool = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self._conv_1(F.relu(x))
        return self._short(x) + self._pool(self._conv_2(F.relu(y)))


class ExitFlow(nn.Layer):
    """The last block, two separable convs with ReLU, pooling and the classifier ``_out``."""

    def __init__(self, class_num: int):
        super().__init__()
        self._conv_0 = ExitFlowBottleneckBlock(728, 728, 1024)
        self._conv_1 = SeparableConv(1024, 1536)
        self._conv_2 = SeparableConv(1536, 2048)
        self._pool = nn.AdaptiveAvgPool2D(1)
        self.flatten = nn.Flatten(start_axis=1, stop_axis=-1)
        bound = 1.0 / math.sqrt(2048)
        self._out = nn.Linear(2048, class_num, weight_attr=ParamAttr(initializer=Uniform(-bound, bound)))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = F.relu(self._conv_1(self._conv_0(x)))
        x = F.relu(self._conv_2(x))
        return self._out(self.flatten(self._pool(x)))


class Xception(ArchModel):
    """Xception; subclasses fix the entry- and middle-flow block counts.

    Args:
        class_num: classifier width.

    Stages: stem (the two entry convs), stage1 (entry-flow blocks), stage2 (middle-flow blocks),
    stage3 (exit-flow block and separable convs), head (pool, flatten, fc).
    """
    entry_flow_block_num: int = 3
    middle_flow_block_num: int = 8

    def __init__(self, class_num: int = 1000):
        super().__init__()
        class_num = check_class_num(class_num)
        self._entry_flow = EntryFlow(self.entry_flow_block_num)
        self._middle_flow = nn.Sequential(*[(f"_conv_{i}", MiddleFlowBottleneckBlock())
                                            for i in range(self.middle_flow_block_num)])
        self._exit_flow = ExitFlow(class_num)

        self.class_num = class_num
        self.num_features = 2048
        self.stages = OrderedDict(
            stem=["_entry_flow._conv1", "_entry_flow._conv2"],
            stage1=_prefixed("_entry_flow", self._entry_flow.blocks),
            stage2=_prefixed("_middle_flow", [f"_conv_{i}" for i in range(self.middle_flow_block_num)]),
            stage3=_prefixed("_exit_flow", ["_conv_0", "_conv_1", "_conv_2"]),
            head=_prefixed("_exit_flow", ["_pool", "flatten", "_out"]))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self._exit_flow(self._middle_flow(self._entry_flow(x)))


def _prefixed(parent: str, names: Sequence[str]) -> List[str]:
    return [f"{parent}.{name}" for name in names]


@MODELS.register
class Xception41(Xception):
    entry_flow_block_num, middle_flow_block_num = 3, 8


@MODELS.register
class Xception65(Xception):
    entry_flow_block_num, middle_flow_block_num = 3, 16


@MODELS.register
class Xception71(Xception):
    entry_flow_block_num, middle_flow_block_num = 5, 16
