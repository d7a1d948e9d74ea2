"""Building blocks of PaddleClas's older ResNet relatives (``ppcls/arch/backbone/model_zoo/``:
ResNeXt, SE-ResNeXt, SE-ResNet_vd, Res2Net, ResNet_vc, ResNeSt; DenseNet and DPN share its
``_conv`` / ``_batch_norm`` units and classifier), in their parameter layout:

    <stem convs>._conv.weight, ._batch_norm.{weight,bias,_mean,_variance}   (conv / conv1 / conv1_1..3)
    bb_<stage>_<i>.conv0 / conv1 / conv2 / [scale.squeeze|excitation] / [short]   ._conv / ._batch_norm
    out.weight [C, class_num], out.bias

These differ from the current ("legendary") ResNet of ``resnet.py`` in every name (``_conv`` vs
``conv``, ``bb_0_0`` vs ``blocks.0``, ``out`` vs ``fc``) and in the vd pooling (padding 0 instead of
"SAME"), so they are separate classes; the family files build their models from them.
Forward: stem -> pool2d_max -> blocks -> pool2d_avg -> reshape -> out (no ``flatten`` sublayer,
as in PaddleClas).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.nn.initializer import Uniform

from ..base import ArchModel
from .common import param_attr


class ConvBN(nn.Layer):
    """Conv -> BN (-> ReLU) with PaddleClas's model_zoo names ``_conv`` / ``_batch_norm``.

    ``vd_pool``: a 2x2 average pool (stride 2, ceil mode) runs first -- the vd shortcut's
    downsampling, so the 1x1 conv after it sees every pixel.  ``bn_no_decay``: no weight decay on
    the BN scale/shift (ResNeSt).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride=1, groups: int = 1,
                 act: Optional[str] = None, vd_pool: bool = False, dilation: int = 1, bn_no_decay: bool = False,
                 data_format: str = "NCHW"):
        super().__init__()
        if vd_pool:
            self._pool2d_avg = nn.AvgPool2D(kernel_size=2, stride=2, padding=0, ceil_mode=True,
                                            data_format=data_format)
        self.vd_pool = vd_pool
        self._conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                               padding=(kernel_size - 1) // 2, dilation=dilation, groups=groups,
                               bias_attr=False, data_format=data_format)
        self._batch_norm = nn.BatchNorm2D(out_channels, weight_attr=param_attr(no_decay=bn_no_decay),
                                          bias_attr=param_attr(no_decay=bn_no_decay), data_format=data_format)
        self.act = act

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.vd_pool:
            x = self._pool2d_avg(x)
        x = self._batch_norm(self._conv(x))
        return F.relu(x) if self.act == "relu" else x


class BNReLUConv(nn.Layer):
    """Pre-activation unit: BN -> ReLU -> conv (no bias, "same" padding for odd kernels), with the
    model_zoo names ``_batch_norm`` / ``_conv`` (DenseNet's and DPN's blocks)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self._batch_norm = nn.BatchNorm2D(in_channels)
        self._conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                               padding=(kernel_size - 1) // 2, groups=groups, bias_attr=False)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self._conv(F.relu(self._batch_norm(x)))


def uniform_linear(in_features: int, out_features: int) -> nn.Linear:
    """A Linear whose weight starts U(-1/sqrt(in), 1/sqrt(in)), as PaddleClas's classifiers and SE layers."""
    bound = 1.0 / math.sqrt(in_features)
    return nn.Linear(in_features, out_features, weight_attr=param_attr(initializer=Uniform(-bound, bound)))


class SELayer(nn.Layer):
    """Squeeze-and-excitation with Linear layers: ``x * sigmoid(W2 relu(W1 avgpool(x))))``.

    ``named_activations``: SE-ResNeXt has ``relu`` / ``sigmoid`` sublayers, SE-ResNet_vd applies
    them as functions (no parameters either way; only the sublayer names differ).
    """

    def __init__(self, channels: int, reduction: int = 16, named_activations: bool = True,
                 data_format: str = "NCHW"):
        super().__init__()
        self.pool2d_gap = nn.AdaptiveAvgPool2D(1, data_format=data_format)
        hidden = int(channels / reduction)
        self.squeeze = uniform_linear(channels, hidden)
        if named_activations:
            self.relu = nn.ReLU()
        self.excitation = uniform_linear(hidden, channels)
        if named_activations:
            self.sigmoid = nn.Sigmoid()
        self.named_activations = named_activations
        self.channel_axis = 1 if data_format == "NCHW" else 3

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        pooled = paddle.flatten(self.pool2d_gap(x), start_axis=1)
        hidden = self.relu(self.squeeze(pooled)) if self.named_activations else F.relu(self.squeeze(pooled))
        gate = self.excitation(hidden)
        gate = self.sigmoid(gate) if self.named_activations else F.sigmoid(gate)
        spatial = [2, 3] if self.channel_axis == 1 else [1, 2]
        return x * paddle.unsqueeze(gate, axis=spatial)


class BottleneckBlock(nn.Layer):
    """1x1 -> 3x3 (grouped, strided) -> 1x1 [-> SE] plus a residual.

    Args:
        width: channels of the 1x1/3x3 convs; out_channels: of the block output.
        groups: the 3x3 conv's groups (ResNeXt's cardinality).
        projection: a 1x1 ConvBN shortcut (first block of a stage).
        vd_projection: the shortcut average-pools (stride 2) and convolves with stride 1.
        se_reduction: add an SE layer (``scale``) with this reduction; se_named: see SELayer.
    """

    def __init__(self, in_channels: int, width: int, out_channels: int, stride: int, groups: int = 1,
                 projection: bool = False, vd_projection: bool = False, se_reduction: Optional[int] = None,
                 se_named: bool = True, data_format: str = "NCHW"):
        super().__init__()
        self.conv0 = ConvBN(in_channels, width, 1, act="relu", data_format=data_format)
        self.conv1 = ConvBN(width, width, 3, stride=stride, groups=groups, act="relu", data_format=data_format)
        self.conv2 = ConvBN(width, out_channels, 1, data_format=data_format)
        self.scale = None if se_reduction is None else SELayer(out_channels, se_reduction, se_named, data_format)
        self.short = _shortcut(in_channels, out_channels, stride, vd_projection, data_format) if projection else None

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self.conv2(self.conv1(self.conv0(x)))
        if self.scale is not None:
            y = self.scale(y)
        return F.relu(y + (x if self.short is None else self.short(x)))


class BasicBlock(nn.Layer):
    """3x3 (strided) -> 3x3 [-> SE] plus a residual (18/34-layer nets); arguments as BottleneckBlock."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, projection: bool = False,
                 vd_projection: bool = False, se_reduction: Optional[int] = None, se_named: bool = True,
                 data_format: str = "NCHW"):
        super().__init__()
        self.conv0 = ConvBN(in_channels, out_channels, 3, stride=stride, act="relu", data_format=data_format)
        self.conv1 = ConvBN(out_channels, out_channels, 3, data_format=data_format)
        self.scale = None if se_reduction is None else SELayer(out_channels, se_reduction, se_named, data_format)
        self.short = _shortcut(in_channels, out_channels, stride, vd_projection, data_format) if projection else None

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self.conv1(self.conv0(x))
        if self.scale is not None:
            y = self.scale(y)
        return F.relu(y + (x if self.short is None else self.short(x)))


def _shortcut(in_channels: int, out_channels: int, stride: int, vd: bool, data_format: str) -> ConvBN:
    """The projection shortcut: a strided 1x1 ConvBN, or in vd mode 2x2 avg pool + 1x1 ConvBN."""
    return ConvBN(in_channels, out_channels, 1, stride=1 if vd else stride, vd_pool=vd, data_format=data_format)


def vd_stem(in_channels: int, widths: Tuple[int, int, int], data_format: str = "NCHW") -> List[Tuple[str, nn.Layer]]:
    """The vd/vc deep stem: three 3x3 ConvBN+ReLU (the first strided) named conv1_1..conv1_3."""
    layers, channels = [], in_channels
    for i, width in enumerate(widths):
        layers.append((f"conv1_{i + 1}", ConvBN(channels, width, 3, stride=2 if i == 0 else 1, act="relu",
                                                data_format=data_format)))
        channels = width
    return layers


def residual_stages(depths: Sequence[int], widths: Sequence[int], out_channels: Sequence[int], in_channels: int,
                    vd: bool, bottleneck: bool = True, **block_args) -> List[List[nn.Layer]]:
    """Stages of bottleneck (or basic) blocks, as every model_zoo family lays them out: per stage
    ``depths[s]`` blocks of ``widths[s]`` inner and ``out_channels[s]`` output channels; the first block
    of a stage has a projection shortcut and, after stage 1, stride 2 (``vd``: its shortcut
    average-pools). ``block_args`` go to every block (``groups``, ``se_reduction``, ``data_format``...)."""
    stages: List[List[nn.Layer]] = []
    for s, (num_blocks, width, out) in enumerate(zip(depths, widths, out_channels)):
        blocks: List[nn.Layer] = []
        for i in range(num_blocks):
            first = i == 0
            args = dict(stride=2 if first and s > 0 else 1, projection=first, vd_projection=vd and s > 0,
                        **block_args)
            blocks.append(BottleneckBlock(in_channels, width, out, **args) if bottleneck
                          else BasicBlock(in_channels, out, **args))
            in_channels = out
        stages.append(blocks)
    return stages


def block_names(depths: Sequence[int]) -> List[List[str]]:
    """``bb_<stage>_<i>`` per stage."""
    return [[f"bb_{s}_{i}" for i in range(n)] for s, n in enumerate(depths)]


class ClassicResNet(ArchModel):
    """Trunk shared by the model_zoo families: stem -> ``pool2d_max`` -> ``bb_<s>_<i>`` blocks ->
    ``pool2d_avg`` -> ``out``.  Subclasses build the stem and the blocks and call :meth:`_assemble`."""

    data_format: str = "NCHW"

    def _assemble(self, stem: Sequence[Tuple[str, nn.Layer]], blocks: Sequence[Sequence[nn.Layer]],
                  num_features: int, class_num: int, data_format: str = "NCHW") -> None:
        """Register the sublayers in PaddleClas's order and record the stages."""
        for name, layer in stem:
            self.add_sublayer(name, layer)
        self.pool2d_max = nn.MaxPool2D(kernel_size=3, stride=2, padding=1, data_format=data_format)
        names = block_names([len(stage) for stage in blocks])
        for stage_names, stage in zip(names, blocks):
            for name, block in zip(stage_names, stage):
                self.add_sublayer(name, block)
        self.pool2d_avg = nn.AdaptiveAvgPool2D(1, data_format=data_format)
        self.out = uniform_linear(num_features, class_num)

        self.data_format = data_format
        self.class_num = class_num
        self.num_features = num_features
        self._trunk = [name for name, _ in stem] + ["pool2d_max"] + [n for stage in names for n in stage]
        stages: Dict[str, List[str]] = OrderedDict(stem=[name for name, _ in stem] + ["pool2d_max"])
        for n, stage_names in enumerate(names, 1):
            stages[f"stage{n}"] = stage_names
        stages["head"] = ["pool2d_avg", "out"]
        self.stages = stages

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.data_format == "NHWC":
            x = paddle.transpose(x, [0, 2, 3, 1])
        for name in self._trunk:
            x = getattr(self, name)(x)
        x = paddle.reshape(self.pool2d_avg(x), [-1, self.num_features])
        return self.out(x)
