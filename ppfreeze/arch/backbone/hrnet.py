"""HRNet-W*-C (Wang et al. 2019, classification head), PaddleClas's ``legendary_models/hrnet.py``
layout.

Parameter names follow the published ``HRNet_W*_C_pretrained.pdparams``:

    conv_layer1_1 / conv_layer1_2 .conv|.bn                          stem (two 3x3/2 convs)
    layer1.<0..3>.conv1|conv2|conv3|[conv_down]|[se]                 bottleneck blocks
    conv_tr1_1, conv_tr1_2, conv_tr2, conv_tr3                       transitions (new branches)
    st2|st3|st4 .stage_func_list.<m>.basic_block_list.<b>.<i>.conv1|conv2|[se]
                .stage_func_list.<m>.fuse_func.residual_func_list.<k>     multi-resolution fusion
    last_cls.func_list.<b>, cls_head_conv_list.<0..2>, conv_last, fc     classification head

Convs are conv (no bias) -> BN -> optional ReLU.  Forward: stem -> layer1 -> (transition ->
stage) x3 keeping 2, 3 then 4 parallel branches at 1/4..1/32 resolution, each stage's modules
exchanging information between branches (1x1 conv + nearest upsampling from lower
resolutions, strided 3x3 convs from higher ones) -> per-branch bottleneck -> strided convs
merging the branches top-down -> 1x1 conv to 2048 -> pool -> flatten -> fc.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import List, Optional, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.nn.initializer import Uniform

from ..base import ArchModel
from ..registry import MODELS
from .common import check_class_num

HEAD_WIDTHS = (32, 64, 128, 256)  # bottleneck widths of the per-branch head blocks (x4 channels out)
MERGE_WIDTHS = (256, 512, 1024)  # outputs of the convs merging the branches top-down


def _uniform(fan_in: int) -> ParamAttr:
    bound = 1.0 / math.sqrt(fan_in)
    return ParamAttr(initializer=Uniform(-bound, bound))


class ConvBNLayer(nn.Layer):
    """'Same' conv (no bias) -> BN -> ReLU (``act="relu"``) or nothing (``act=None``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 act: Optional[str] = "relu"):
        super().__init__()
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                              padding=(kernel_size - 1) // 2, bias_attr=False)
        self.bn = nn.BatchNorm2D(out_channels)
        self.act = nn.ReLU() if act == "relu" else nn.Identity()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.act(self.bn(self.conv(x)))


class SELayer(nn.Layer):
    """Squeeze-and-excitation with fc layers (reduction 16) and sigmoid gates."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        mid = int(channels / reduction)
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.fc_squeeze = nn.Linear(channels, mid, weight_attr=_uniform(channels))
        self.relu = nn.ReLU()
        self.fc_excitation = nn.Linear(mid, channels, weight_attr=_uniform(mid))
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        gate = paddle.squeeze(self.avg_pool(x), axis=[2, 3])
        gate = self.sigmoid(self.fc_excitation(self.relu(self.fc_squeeze(gate))))
        return x * paddle.unsqueeze(gate, axis=[2, 3])


class BottleneckBlock(nn.Layer):
    """1x1 -> 3x3 -> 1x1 (x4 channels) [-> SE] + shortcut (1x1 conv + BN when ``downsample``)."""

    def __init__(self, in_channels: int, width: int, has_se: bool, downsample: bool):
        super().__init__()
        self.conv1 = ConvBNLayer(in_channels, width, 1)
        self.conv2 = ConvBNLayer(width, width, 3)
        self.conv3 = ConvBNLayer(width, width * 4, 1, act=None)
        self.conv_down = ConvBNLayer(in_channels, width * 4, 1, act=None) if downsample else None
        self.se = SELayer(width * 4) if has_se else None
        self.relu = nn.ReLU()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self.conv3(self.conv2(self.conv1(x)))
        if self.se is not None:
            y = self.se(y)
        return self.relu(y + (x if self.conv_down is None else self.conv_down(x)))


class BasicBlock(nn.Layer):
    """3x3 -> 3x3 [-> SE] + identity shortcut."""

    def __init__(self, channels: int, has_se: bool):
        super().__init__()
        self.conv1 = ConvBNLayer(channels, channels, 3)
        self.conv2 = ConvBNLayer(channels, channels, 3, act=None)
        self.se = SELayer(channels) if has_se else None
        self.relu = nn.ReLU()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self.conv2(self.conv1(x))
        if self.se is not None:
            y = self.se(y)
        return self.relu(x + y)


class FuseLayers(nn.Layer):
    """Every output branch i sums all input branches, brought to its resolution and width:
    j > i (lower resolution): 1x1 conv + BN, then nearest upsampling by 2^(j-i);
    j < i (higher resolution): i-j strided 3x3 convs (ReLU on all but the last).
    ``residual_func_list`` holds those convs flat, in (i, j, step) order."""

    def __init__(self, channels: Sequence[int]):
        super().__init__()
        self.channels = list(channels)
        self.residual_func_list = nn.LayerList()
        self.relu = nn.ReLU()
        for i, c_out in enumerate(channels):
            for j, c_in in enumerate(channels):
                if j > i:
                    self.residual_func_list.append(ConvBNLayer(c_in, c_out, 1, act=None))
                for step in range(i - j):  # j < i
                    last = step == i - j - 1
                    self.residual_func_list.append(
                        ConvBNLayer(c_in, c_out if last else c_in, 3, stride=2, act=None if last else "relu"))

    def forward(self, xs: List[paddle.Tensor]) -> List[paddle.Tensor]:
        convs = iter(self.residual_func_list)
        out = []
        for i in range(len(self.channels)):
            y = xs[i]
            for j in range(len(self.channels)):
                if j > i:
                    y = y + F.interpolate(next(convs)(xs[j]), scale_factor=2 ** (j - i), mode="nearest")
                elif j < i:
                    xj = xs[j]
                    for _ in range(i - j):
                        xj = next(convs)(xj)
                    y = y + xj
            out.append(self.relu(y))
        return out


class HighResolutionModule(nn.Layer):
    """Four basic blocks on every branch, then a fusion across branches."""

    def __init__(self, channels: Sequence[int], has_se: bool):
        super().__init__()
        self.basic_block_list = nn.LayerList(
            [nn.Sequential(*[BasicBlock(c, has_se) for _ in range(4)]) for c in channels])
        self.fuse_func = FuseLayers(channels)

    def forward(self, xs: List[paddle.Tensor]) -> List[paddle.Tensor]:
        return self.fuse_func([blocks(x) for blocks, x in zip(self.basic_block_list, xs)])


class Stage(nn.Layer):
    """``num_modules`` high-resolution modules over a list of branches."""

    def __init__(self, num_modules: int, channels: Sequence[int], has_se: bool):
        super().__init__()
        self.stage_func_list = nn.LayerList([HighResolutionModule(channels, has_se) for _ in range(num_modules)])

    def forward(self, xs: List[paddle.Tensor]) -> List[paddle.Tensor]:
        for module in self.stage_func_list:
            xs = module(xs)
        return xs


class LastClsOut(nn.Layer):
    """One downsampling bottleneck block per branch (widths 32/64/128/256, x4 channels out)."""

    def __init__(self, channels: Sequence[int], has_se: bool):
        super().__init__()
        self.func_list = nn.LayerList([BottleneckBlock(c, w, has_se, downsample=True)
                                       for c, w in zip(channels, HEAD_WIDTHS)])

    def forward(self, xs: List[paddle.Tensor]) -> List[paddle.Tensor]:
        return [block(x) for block, x in zip(self.func_list, xs)]


class HRNet(ArchModel):
    """HRNet classification model; subclasses fix the branch ``width`` (and SE).

    Args:
        class_num: classifier width.
        has_se: squeeze-and-excitation in every block (the SE_HRNet variants set it).

    Stages: stem (two strided convs), stage1 (``layer1``), stage2..stage4 (the transition
    convs opening a branch and ``st2``..``st4``), head (per-branch blocks, the merging convs,
    ``conv_last``, pool, flatten, fc).
    """
    width: int = 18
    default_has_se: bool = False

    def __init__(self, class_num: int = 1000, has_se: Optional[bool] = None):
        super().__init__()
        class_num = check_class_num(class_num)
        has_se = self.default_has_se if has_se is None else bool(has_se)
        w = self.width
        self.conv_layer1_1 = ConvBNLayer(3, 64, 3, stride=2)
        self.conv_layer1_2 = ConvBNLayer(64, 64, 3, stride=2)
        self.layer1 = nn.Sequential(*[BottleneckBlock(64 if i == 0 else 256, 64, has_se, downsample=i == 0)
                                      for i in range(4)])
        self.conv_tr1_1 = ConvBNLayer(256, w, 3)
        self.conv_tr1_2 = ConvBNLayer(256, w * 2, 3, stride=2)
        self.st2 = Stage(1, [w, w * 2], has_se)
        self.conv_tr2 = ConvBNLayer(w * 2, w * 4, 3, stride=2)
        self.st3 = Stage(4, [w, w * 2, w * 4], has_se)
        self.conv_tr3 = ConvBNLayer(w * 4, w * 8, 3, stride=2)
        self.st4 = Stage(3, [w, w * 2, w * 4, w * 8], has_se)

        self.last_cls = LastClsOut([w, w * 2, w * 4, w * 8], has_se)
        self.cls_head_conv_list = nn.LayerList([ConvBNLayer(HEAD_WIDTHS[i] * 4, MERGE_WIDTHS[i], 3, stride=2)
                                                for i in range(3)])
        self.conv_last = ConvBNLayer(1024, 2048, 1)
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.flatten = nn.Flatten(start_axis=1, stop_axis=-1)
        self.fc = nn.Linear(2048, class_num, weight_attr=_uniform(2048))

        self.class_num = class_num
        self.num_features = 2048
        self.stages = OrderedDict(
            stem=["conv_layer1_1", "conv_layer1_2"], stage1=["layer1"], stage2=["conv_tr1_1", "conv_tr1_2", "st2"],
            stage3=["conv_tr2", "st3"], stage4=["conv_tr3", "st4"],
            head=["last_cls", "cls_head_conv_list", "conv_last", "avg_pool", "flatten", "fc"])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.layer1(self.conv_layer1_2(self.conv_layer1_1(x)))
        xs = self.st2([self.conv_tr1_1(x), self.conv_tr1_2(x)])
        xs = self.st3(xs + [self.conv_tr2(xs[-1])])
        xs = self.st4(xs + [self.conv_tr3(xs[-1])])
        xs = self.last_cls(xs)
        y = xs[0]
        for conv, branch in zip(self.cls_head_conv_list, xs[1:]):
            y = branch + conv(y)
        y = self.flatten(self.avg_pool(self.conv_last(y)))
        return self.fc(y)


@MODELS.register
class HRNet_W18_C(HRNet):
    width = 18


@MODELS.register
class HRNet_W30_C(HRNet):
    width = 30


@MODELS.register
class HRNet_W32_C(HRNet):
    width = 32


@MODELS.register
class HRNet_W40_C(HRNet):
    width = 40


@MODELS.register
class HRNet_W44_C(HRNet):
    width = 44


@MODELS.register
class HRNet_W48_C(HRNet):
    width = 48


@MODELS.register
class HRNet_W60_C(HRNet):
    width = 60


@MODELS.register
class HRNet_W64_C(HRNet):
    width = 64


@MODELS.register
class SE_HRNet_W64_C(HRNet):
    width, default_has_se = 64, True
