"""GhostNet (Han et al. 2020): ghost modules (a few convs plus cheap depthwise "ghost" features),
PaddleClas layout.

Parameter names follow PaddleClas's ``model_zoo/ghostnet.py`` (the layout of the published
``GhostNet_x*_pretrained.pdparams``); its bottlenecks hang off the root as ``_ghostbottleneck_<i>``:

    conv1._conv.weight, conv1._batch_norm.*                                  stem (3x3, stride 2)
    _ghostbottleneck_<i>.ghost_module_1 / [depthwise_conv] / [se_block.squeeze|excitation]
        / ghost_module_2 / [shortcut_depthwise, shortcut_conv]
    conv_last (1x1), fc_0 (1x1 conv + BN + ReLU after pooling), fc_1.weight, fc_1.bias

Forward: conv1 -> bottlenecks -> conv_last -> pool2d_gap -> fc_0 -> dropout -> flatten -> fc_1.
``flatten`` is our addition (no parameters; PaddleClas reshapes functionally) so that
retrieval configs can cut the network there.  Stages split the bottlenecks where the
resolution halves: 0 | 1-2 | 3-4 | 5-10 | 11-15; the head is conv_last onwards.
"""
from __future__ import annotations

import math
from typing import List

import paddle
import paddle.nn as nn
from paddle.nn.initializer import KaimingNormal, Uniform

from ..base import ArchModel
from ..registry import MODELS
from .common import ConvBNAct, check_class_num, make_divisible, param_attr, split_at_downsampling, stage_map

# per bottleneck: (kernel, hidden channels, out channels, use_se, stride) at scale 1.0
BOTTLENECKS = [
    (3, 16, 16, False, 1),
    (3, 48, 24, False, 2),
    (3, 72, 24, False, 1),
    (5, 72, 40, True, 2),
    (5, 120, 40, True, 1),
    (3, 240, 80, False, 2),
    (3, 200, 80, False, 1),
    (3, 184, 80, False, 1),
    (3, 184, 80, False, 1),
    (3, 480, 112, True, 1),
    (3, 672, 112, True, 1),
    (5, 672, 160, True, 2),
    (5, 960, 160, False, 1),
    (5, 960, 160, True, 1),
    (5, 960, 160, False, 1),
    (5, 960, 160, True, 1),
]
STEM_CHANNELS = 16
FC0_CHANNELS = 1280
DIVISOR = 4  # GhostNet rounds scaled widths to multiples of 4


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
             relu: bool = False) -> ConvBNAct:
    """Conv (Kaiming init) -> BN (no weight decay) -> optional ReLU, PaddleClas's names."""
    return ConvBNAct(in_channels, out_channels, kernel_size, stride, groups=groups, act="relu" if relu else None,
                     names=("_conv", "_batch_norm", "_act"), bn_no_decay=True, conv_init=KaimingNormal())


def _uniform_linear(in_features: int, out_features: int) -> nn.Linear:
    """A Linear with weights ~ U(-1/sqrt(in), 1/sqrt(in)), PaddleClas's init here."""
    bound = 1.0 / math.sqrt(in_features)
    return nn.Linear(in_features, out_features, weight_attr=param_attr(initializer=Uniform(-bound, bound)))


class SEBlock(nn.Layer):
    """Squeeze-and-excitation with Linear layers and a clip(0, 1) gate."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.pool2d_gap = nn.AdaptiveAvgPool2D(1)
        self.squeeze = _uniform_linear(channels, channels // reduction)
        self.excitation = _uniform_linear(channels // reduction, channels)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        gate = paddle.flatten(self.pool2d_gap(x), start_axis=1)
        gate = paddle.clip(self.excitation(nn.functional.relu(self.squeeze(gate))), min=0.0, max=1.0)
        return x * gate.unsqueeze([2, 3])


class GhostModule(nn.Layer):
    """Half of the output from a 1x1 conv (``primary_conv``), the other half from a cheap 3x3
    depthwise conv on that (``cheap_operation``), concatenated."""

    def __init__(self, in_channels: int, out_channels: int, relu: bool):
        super().__init__()
        primary = math.ceil(out_channels / 2)
        self.primary_conv = _conv_bn(in_channels, primary, 1, relu=relu)
        self.cheap_operation = _conv_bn(primary, primary, 3, groups=primary, relu=relu)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.primary_conv(x)
        return paddle.concat([x, self.cheap_operation(x)], axis=1)


class GhostBottleneck(nn.Layer):
    """Ghost module (expand) -> [strided depthwise] -> [SE] -> ghost module (project), plus the
    input, or a depthwise + 1x1 projection of it when width or resolution change."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int, kernel_size: int, stride: int,
                 use_se: bool):
        super().__init__()
        self.ghost_module_1 = GhostModule(in_channels, hidden, relu=True)
        self.depthwise_conv = _conv_bn(hidden, hidden, kernel_size, stride, groups=hidden) if stride == 2 else None
        self.se_block = SEBlock(hidden) if use_se else None
        self.ghost_module_2 = GhostModule(hidden, out_channels, relu=False)
        self.projection = stride != 1 or in_channels != out_channels
        if self.projection:
            self.shortcut_depthwise = _conv_bn(in_channels, in_channels, kernel_size, stride, groups=in_channels)
            self.shortcut_conv = _conv_bn(in_channels, out_channels, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self.ghost_module_1(x)
        if self.depthwise_conv is not None:
            y = self.depthwise_conv(y)
        if self.se_block is not None:
            y = self.se_block(y)
        y = self.ghost_module_2(y)
        shortcut = self.shortcut_conv(self.shortcut_depthwise(x)) if self.projection else x
        return y + shortcut


class GhostNet(ArchModel):
    """GhostNet; the registered subclasses fix the width ``scale``.

    Args:
        class_num: classifier width.
    """
    scale: float = 1.0

    def __init__(self, class_num: int = 1000):
        super().__init__()
        class_num = check_class_num(class_num)
        width = self._width
        in_channels = width(STEM_CHANNELS)
        self.conv1 = _conv_bn(3, in_channels, 3, 2, relu=True)
        self.bottleneck_names: List[str] = []
        for i, (k, hidden, out, use_se, stride) in enumerate(BOTTLENECKS):
            name = f"_ghostbottleneck_{i}"
            self.add_sublayer(name, GhostBottleneck(in_channels, width(hidden), width(out), k, stride, use_se))
            self.bottleneck_names.append(name)
            in_channels = width(out)
        last = width(BOTTLENECKS[-1][1])
        self.conv_last = _conv_bn(in_channels, last, 1, relu=True)
        self.pool2d_gap = nn.AdaptiveAvgPool2D(1)
        self.fc_0 = _conv_bn(last, FC0_CHANNELS, 1, relu=True)
        self.dropout = nn.Dropout(p=0.2)
        self.flatten = nn.Flatten(start_axis=1, stop_axis=-1)
        self.fc_1 = _uniform_linear(FC0_CHANNELS, class_num)

        self.class_num = class_num
        self.num_features = FC0_CHANNELS
        groups = split_at_downsampling(self.bottleneck_names, [b[4] for b in BOTTLENECKS])
        self.stages = stage_map(["conv1"], groups, ["conv_last", "pool2d_gap", "fc_0", "dropout", "flatten", "fc_1"])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.conv1(x)
        for name in self.bottleneck_names:
            x = getattr(self, name)(x)
        x = self.conv_last(x)
        x = self.pool2d_gap(x)
        x = self.dropout(self.fc_0(x))
        x = self.flatten(x)
        return self.fc_1(x)

    def _width(self, channels: int) -> int:
        return make_divisible(channels * self.scale, DIVISOR)


@MODELS.register
class GhostNet_x0_5(GhostNet):
    scale = 0.5


@MODELS.register
class GhostNet_x1_0(GhostNet):
    scale = 1.0


@MODELS.register
class GhostNet_x1_3(GhostNet):
    scale = 1.3
