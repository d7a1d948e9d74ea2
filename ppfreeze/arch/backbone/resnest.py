"""ResNeSt (Zhang et al. 2020, split-attention networks), PaddleClas's ``model_zoo/resnest.py`` layout:

    stem.conv1 / conv2 / conv3 . _conv | _batch_norm . ...          deep 3x3 stem, then max_pool2d
    layer<s>.layer<s>_bottleneck_<i>.conv1 / conv2 (SplatConv: conv1, conv2, conv3) / conv3
                                    / [conv4, _batch_norm]            (the average-pooled shortcut)
    out.weight [2048, class_num], out.bias

Split attention: the 3x3 conv produces ``radix`` versions of its output; a gate computed from
their pooled sum (softmax across the radix, or a sigmoid when radix is 1) mixes them.  Every
PaddleClas model uses the deep stem, average-pooled shortcuts ("avg_down") and a 3x3 average
pool for downsampling inside the block ("avd"), before (``avd_first``) or after the 3x3 conv.
BN scales and shifts take no weight decay.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import List, Tuple

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.nn.initializer import KaimingNormal

from ..base import ArchModel
from ..registry import MODELS
from .common import check_class_num, param_attr
from .resnet_classic import ConvBN, uniform_linear

PLANES = (64, 128, 256, 512)  # bottleneck outputs are 4x these


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, groups: int = 1, act: bool = True) -> ConvBN:
    """ResNeSt's ConvBN: BN without weight decay."""
    return ConvBN(in_channels, out_channels, kernel_size, groups=groups, act="relu" if act else None,
                  bn_no_decay=True)


class RSoftmax(nn.Layer):
    """Attention weights: softmax over the radix within each cardinal group, or a sigmoid for radix 1."""

    def __init__(self, radix: int, cardinality: int):
        super().__init__()
        self.radix, self.cardinality = radix, cardinality

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.radix == 1:
            return F.sigmoid(x)
        x = paddle.reshape(x, [0, self.cardinality, self.radix, -1]).transpose([0, 2, 1, 3])
        return paddle.reshape(F.softmax(x, axis=1), [0, -1, 1, 1])


class SplatConv(nn.Layer):
    """Split-attention 3x3 conv: ``radix`` grouped convs mixed by attention from their pooled sum."""

    def __init__(self, channels: int, radix: int, cardinality: int = 1, reduction: int = 4):
        super().__init__()
        self.radix = radix
        self.conv1 = conv_bn(channels, channels * radix, 3, groups=cardinality * radix)
        self.avg_pool2d = nn.AdaptiveAvgPool2D(1)
        inter_channels = int(max(channels * radix // reduction, 32))
        self.conv2 = conv_bn(channels, inter_channels, 1, groups=cardinality)
        self.conv3 = nn.Conv2D(inter_channels, channels * radix, 1, groups=cardinality,
                               weight_attr=param_attr(initializer=KaimingNormal()))
        self.rsoftmax = RSoftmax(radix, cardinality)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.conv1(x)
        splits = paddle.split(x, self.radix, axis=1) if self.radix > 1 else [x]
        gap = paddle.add_n(splits) if self.radix > 1 else x
        attention = self.rsoftmax(self.conv3(self.conv2(self.avg_pool2d(gap))))
        if self.radix == 1:
            return x * attention
        weights = paddle.split(attention, self.radix, axis=1)
        return paddle.add_n([w * s for w, s in zip(weights, splits)])


class BottleneckBlock(nn.Layer):
    """1x1 -> [avd pool] -> split-attention 3x3 -> [avd pool] -> 1x1 (x4), plus the shortcut
    (avg pool + 1x1 conv + BN when the shape changes)."""

    def __init__(self, in_channels: int, planes: int, stride: int, radix: int, avd_first: bool,
                 is_first: bool = False):
        super().__init__()
        self.conv1 = conv_bn(in_channels, planes, 1)
        downsample = stride > 1 or is_first
        self.avd_first = avd_first
        if downsample and avd_first:
            self.avg_pool2d_1 = nn.AvgPool2D(kernel_size=3, stride=stride, padding=1)
        self.conv2 = SplatConv(planes, radix)
        if downsample and not avd_first:
            self.avg_pool2d_2 = nn.AvgPool2D(kernel_size=3, stride=stride, padding=1)
        self.conv3 = conv_bn(planes, planes * 4, 1, act=False)
        self.downsample = downsample
        self.project = stride != 1 or in_channels != planes * 4
        if self.project:
            self.avg_pool2d_3 = nn.AvgPool2D(kernel_size=stride, stride=stride, padding=0)
            self.conv4 = nn.Conv2D(in_channels, planes * 4, 1, weight_attr=param_attr(initializer=KaimingNormal()),
                                   bias_attr=False)
            self._batch_norm = nn.BatchNorm2D(planes * 4, weight_attr=param_attr(no_decay=True),
                                              bias_attr=param_attr(no_decay=True))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self.conv1(x)
        if self.downsample and self.avd_first:
            y = self.avg_pool2d_1(y)
        y = self.conv2(y)
        if self.downsample and not self.avd_first:
            y = self.avg_pool2d_2(y)
        y = self.conv3(y)
        short = self._batch_norm(self.conv4(self.avg_pool2d_3(x))) if self.project else x
        return F.relu(short + y)


class ResNeStLayer(nn.Layer):
    """One stage: ``<name>_bottleneck_<i>`` blocks, the first strided."""

    def __init__(self, name: str, in_channels: int, planes: int, num_blocks: int, stride: int, radix: int,
                 avd_first: bool, is_first: bool):
        super().__init__()
        self.names = [f"{name}_bottleneck_{i}" for i in range(num_blocks)]
        for i, block in enumerate(self.names):
            self.add_sublayer(block, BottleneckBlock(in_channels if i == 0 else planes * 4, planes,
                                                     stride=stride if i == 0 else 1, radix=radix,
                                                     avd_first=avd_first, is_first=is_first and i == 0))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        for name in self.names:
            x = getattr(self, name)(x)
        return x


class ResNeSt(ArchModel):
    """ResNeSt; subclasses fix ``depths``, ``radix``, ``stem_width`` and ``avd_first``.

    Args:
        class_num: classifier width (the only argument PaddleClas's configs pass).
    """
    depths: Tuple[int, int, int, int] = (3, 4, 6, 3)
    radix: int = 2
    stem_width: int = 32
    avd_first: bool = False

    def __init__(self, class_num: int = 1000):
        super().__init__()
        class_num = check_class_num(class_num)
        w = self.stem_width
        self.stem = nn.Sequential(("conv1", ConvBN(3, w, 3, stride=2, act="relu", bn_no_decay=True)),
                                  ("conv2", conv_bn(w, w, 3)),
                                  ("conv3", conv_bn(w, w * 2, 3)))
        self.max_pool2d = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)
        in_channels = w * 2
        layers: List[str] = []
        for s, (num_blocks, planes) in enumerate(zip(self.depths, PLANES)):
            name = f"layer{s + 1}"
            # PaddleClas: layer1 is_first=False, later layers keep ResNeStLayer's default True
            setattr(self, name, ResNeStLayer(name, in_channels, planes, num_blocks, stride=1 if s == 0 else 2,
                                             radix=self.radix, avd_first=self.avd_first, is_first=s > 0))
            in_channels = planes * 4
            layers.append(name)
        self.pool2d_avg = nn.AdaptiveAvgPool2D(1)
        self.out = uniform_linear(in_channels, class_num)

        self.class_num = class_num
        self.num_features = in_channels
        self.stages = OrderedDict(stem=["stem", "max_pool2d"], **{f"stage{s + 1}": [n] for s, n in enumerate(layers)},
                                  head=["pool2d_avg", "out"])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.max_pool2d(self.stem(x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = paddle.reshape(self.pool2d_avg(x), [-1, self.num_features])
        return self.out(x)


@MODELS.register
class ResNeSt50_fast_1s1x64d(ResNeSt):
    depths, radix, stem_width, avd_first = (3, 4, 6, 3), 1, 32, True


@MODELS.register
class ResNeSt50(ResNeSt):
    depths, radix, stem_width, avd_first = (3, 4, 6, 3), 2, 32, False


@MODELS.register
class ResNeSt101(ResNeSt):
    depths, radix, stem_width, avd_first = (3, 4, 23, 3), 2, 64, False


@MODELS.register
class ResNeSt200(ResNeSt):
    depths, radix, stem_width, avd_first = (3, 24, 36, 3), 2, 64, False


@MODELS.register
class ResNeSt269(ResNeSt):
    depths, radix, stem_width, avd_first = (3, 30, 48, 8), 2, 64, False
