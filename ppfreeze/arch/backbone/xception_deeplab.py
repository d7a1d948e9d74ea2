"""Xception 41/65 in the DeepLab v3+ form (Chen et al. 2018), PaddleClas's
``model_zoo/xception_deeplab.py`` layout.

Parameter names follow the published ``Xception*_deeplab_pretrained.pdparams``, whose block
names contain slashes (``xception_65/entry_flow/block1``):

    _conv1|_conv2 ._conv.weight / ._bn.*                                    stem
    xception_<d>/entry_flow/block<i>._conv1|_conv2|_conv3 ._conv1|_bn1|_conv2|_bn2 , ._short._conv|._bn
    xception_<d>/middle_flow/block<i>._conv1|_conv2|_conv3 ...             (identity shortcut)
    _exit_flow_1 (strided shortcut), _exit_flow_2 (dilation 2, ReLU inside, no shortcut), _fc

A separable conv here is 3x3 depthwise + BN, then 1x1 pointwise + BN; BNs use epsilon 1e-3
and momentum 0.99.  Every entry-flow block downsamples by 2 (PaddleClas passes stride 2 to
each, whatever its stride table says), the first exit block too, the last one dilates
instead.  Forward: stem -> entry -> middle -> exit -> dropout -> pool -> squeeze -> fc.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import List, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..base import ArchModel
from ..registry import MODELS
from .common import check_class_num

ENTRY_CHANNELS = (128, 256, 728)
EXIT_CHANNELS = ((728, 1024, 1024), (1536, 1536, 2048))


def _bn(channels: int) -> nn.BatchNorm2D:
    return nn.BatchNorm2D(channels, epsilon=1e-3, momentum=0.99)


class ConvBNLayer(nn.Layer):
    """Conv (no bias) -> BN -> optional ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 relu: bool = False):
        super().__init__()
        self._conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                               bias_attr=False)
        self._bn = _bn(out_channels)
        self.relu = relu

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._bn(self._conv(x))
        return F.relu(x) if self.relu else x


class SeparateConv(nn.Layer):
    """Depthwise kxk conv + BN [+ ReLU], then pointwise 1x1 conv + BN [+ ReLU]."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dilation: int = 1, relu: bool = False,
                 kernel_size: int = 3):
        super().__init__()
        self._conv1 = nn.Conv2D(in_channels, in_channels, kernel_size, stride=stride, groups=in_channels,
                                padding=kernel_size // 2 * dilation, dilation=dilation, bias_attr=False)
        self._bn1 = _bn(in_channels)
        self._conv2 = nn.Conv2D(in_channels, out_channels, 1, bias_attr=False)
        self._bn2 = _bn(out_channels)
        self.relu = relu

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._bn1(self._conv1(x))
        if self.relu:
            x = F.relu(x)
        x = self._bn2(self._conv2(x))
        return F.relu(x) if self.relu else x


class XceptionBlock(nn.Layer):
    """Three separable convs (the last one strided) and a shortcut.

    ``relu_inside`` False: ReLU before each separable conv (PaddleClas's default); True: the
    separable convs apply ReLU after each BN.  ``shortcut``: "conv" (strided 1x1 conv + BN),
    "identity" or None.
    """

    def __init__(self, in_channels: int, channels: Sequence[int], stride: int, dilation: int = 1,
                 shortcut: str = "conv", relu_inside: bool = False):
        super().__init__()
        self.relu_inside = relu_inside
        self.shortcut = shortcut
        ins = [in_channels, channels[0], channels[1]]
        for i, (c_in, c_out, s) in enumerate(zip(ins, channels, (1, 1, stride)), 1):
            setattr(self, f"_conv{i}", SeparateConv(c_in, c_out, s, dilation=dilation, relu=relu_inside))
        if shortcut == "conv":
            self._short = ConvBNLayer(in_channels, channels[-1], 1, stride=stride)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = x
        for conv in (self._conv1, self._conv2, self._conv3):
            y = conv(y if self.relu_inside else F.relu(y))
        if self.shortcut == "conv":
            return y + self._short(x)
        return y + x if self.shortcut == "identity" else y


class XceptionDeeplab(ArchModel):
    """Xception (DeepLab form); subclasses fix ``depth`` (41 or 65).

    Args:
        class_num: classifier width.

    Stages: stem (``_conv1``, ``_conv2``), stage1 (entry-flow blocks), stage2 (middle-flow
    blocks), stage3 (the two exit-flow blocks), head (dropout, pool, fc).
    """
    depth: int = 65
    middle_blocks: int = 16

    def __init__(self, class_num: int = 1000):
        super().__init__()
        class_num = check_class_num(class_num)
        prefix = f"xception_{self.depth}"
        self._conv1 = ConvBNLayer(3, 32, 3, stride=2, padding=1, relu=True)
        self._conv2 = ConvBNLayer(32, 64, 3, stride=1, padding=1, relu=True)
        entry: List[str] = []
        in_channels = 64
        for i, channels in enumerate(ENTRY_CHANNELS, 1):
            entry.append(self._add(f"{prefix}/entry_flow/block{i}", XceptionBlock(in_channels, [channels] * 3, 2)))
            in_channels = channels
        middle = [self._add(f"{prefix}/middle_flow/block{i}", XceptionBlock(728, [728] * 3, 1, shortcut="identity"))
                  for i in range(1, self.middle_blocks + 1)]
        # output stride 32: the first exit block still downsamples, the second dilates instead
        self._exit_flow_1 = XceptionBlock(728, EXIT_CHANNELS[0], 2)
        self._exit_flow_2 = XceptionBlock(EXIT_CHANNELS[0][-1], EXIT_CHANNELS[1], 1, dilation=2, shortcut=None,
                                          relu_inside=True)
        self._drop = nn.Dropout(p=0.5, mode="downscale_in_infer")
        self._pool = nn.AdaptiveAvgPool2D(1)
        self._fc = nn.Linear(EXIT_CHANNELS[1][-1], class_num)

        self.class_num = class_num
        self.num_features = EXIT_CHANNELS[1][-1]
        self.stages = OrderedDict(stem=["_conv1", "_conv2"], stage1=entry, stage2=middle,
                                  stage3=["_exit_flow_1", "_exit_flow_2"], head=["_drop", "_pool", "_fc"])
        self._body = entry + middle

    def _add(self, name: str, layer: nn.Layer) -> str:
        self.add_sublayer(name, layer)
        return name

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._conv2(self._conv1(x))
        for name in self._body:
            x = self._sub_layers[name](x)
        x = self._exit_flow_2(self._exit_flow_1(x))
        x = paddle.squeeze(self._pool(self._drop(x)), axis=[2, 3])
        return self._fc(x)


@MODELS.register
class Xception41_deeplab(XceptionDeeplab):
    depth, middle_blocks = 41, 8


@MODELS.register
class Xception65_deeplab(XceptionDeeplab):
    depth, middle_blocks = 65, 16
