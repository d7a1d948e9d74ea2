"""Res2Net (Gao et al. 2019) and Res2Net_vd, PaddleClas's ``model_zoo/res2net.py`` /
``res2net_vd.py`` layout (see ``resnet_classic.py`` for the shared key names):

    Res2Net:    conv1 (7x7)                 -> pool2d_max -> bb_<s>_<i> -> pool2d_avg -> out
    Res2Net_vd: conv1_1..conv1_3 (3x3 stem) -> pool2d_max -> bb_<s>_<i> (shortcuts pool first) -> ...

A block splits its 1x1 conv's output into ``scales`` groups of ``width`` channels; each 3x3 ConvBN
``res<stage><letter>_branch2b_<k>`` (PaddleClas's sublayer names, e.g. ``res2a_branch2b_1``) sees its
group plus the previous group's output, the last group passes through (``pool2d_avg`` when strided).
"""
from __future__ import annotations

from typing import List

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..registry import MODELS
from .common import check_class_num
from .resnet_classic import ClassicResNet, ConvBN, vd_stem

DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3), 200: (3, 12, 48, 3)}
OUT_CHANNELS = (256, 512, 1024, 2048)


class Res2NetBlock(nn.Layer):
    """Res2Net bottleneck: 1x1 -> hierarchical 3x3 convs over ``scales`` channel groups -> 1x1, plus a residual.

    The groups' 3x3 convs are chained (each adds the previous output) except in strided blocks,
    where every group is convolved on its own and the last one is average-pooled.
    """

    def __init__(self, in_channels: int, width: int, out_channels: int, stride: int, scales: int, name: str,
                 projection: bool, vd_projection: bool):
        super().__init__()
        self.stride = stride
        self.conv0 = ConvBN(in_channels, width, 1, act="relu")
        self.branch_names = [f"{name}_branch2b_{k}" for k in range(1, scales)]
        for branch in self.branch_names:
            self.add_sublayer(branch, ConvBN(width // scales, width // scales, 3, stride=stride, act="relu"))
        self.pool2d_avg = nn.AvgPool2D(kernel_size=3, stride=stride, padding=1)
        self.conv2 = ConvBN(width, out_channels, 1)
        self.short = ConvBN(in_channels, out_channels, 1, stride=1 if vd_projection else stride,
                            vd_pool=vd_projection) if projection else None
        self.scales = scales

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        groups = paddle.split(self.conv0(x), self.scales, axis=1)
        outs: List[paddle.Tensor] = []
        for k, branch in enumerate(self.branch_names):
            chained = k > 0 and self.stride == 1
            outs.append(getattr(self, branch)(groups[k] + outs[-1] if chained else groups[k]))
        outs.append(groups[-1] if self.stride == 1 else self.pool2d_avg(groups[-1]))
        y = self.conv2(paddle.concat(outs, axis=1))
        return F.relu(y + (x if self.short is None else self.short(x)))


def block_name(layers: int, stage: int, index: int, long_stage_depths: tuple) -> str:
    """PaddleClas's ``res<stage+2><letter>`` name; long third stages use ``res4a, res4b1, res4b2, ...``."""
    if layers in long_stage_depths and stage == 2:
        return "res4a" if index == 0 else f"res4b{index}"
    return f"res{stage + 2}{chr(97 + index)}"


class Res2Net(ClassicResNet):
    """Res2Net; subclasses fix ``layers``, ``scales`` and ``width`` (channels per group in stage 1).

    Args:
        class_num: classifier width (PaddleClas's class takes no other argument).
    """
    layers: int = 50
    scales: int = 4
    width: int = 26
    vd: bool = False
    # depths whose stage-3 blocks are named res4a, res4b1, ... (PaddleClas: 101/152; vd also 200)
    long_names: tuple = (101, 152)

    def __init__(self, class_num: int = 1000):
        super().__init__()
        stem = vd_stem(3, (32, 32, 64)) if self.vd else [("conv1", ConvBN(3, 64, 7, stride=2, act="relu"))]
        stages: List[List[nn.Layer]] = []
        in_channels = 64
        for s, (num_blocks, out_channels) in enumerate(zip(DEPTHS[self.layers], OUT_CHANNELS)):
            width = self.width * self.scales * 2 ** s
            stages.append([Res2NetBlock(in_channels if i == 0 else out_channels, width, out_channels,
                                        stride=2 if i == 0 and s > 0 else 1, scales=self.scales,
                                        name=block_name(self.layers, s, i, self.long_names),
                                        projection=i == 0, vd_projection=self.vd and s > 0)
                           for i in range(num_blocks)])
            in_channels = out_channels
        self._assemble(stem, stages, 2048, check_class_num(class_num))


class Res2Net_vd(Res2Net):
    """Res2Net with the vd stem and average-pooling shortcuts."""
    vd = True
    long_names = (101, 152, 200)


@MODELS.register
class Res2Net50_26w_4s(Res2Net):
    layers, scales, width = 50, 4, 26


@MODELS.register
class Res2Net50_14w_8s(Res2Net):
    layers, scales, width = 50, 8, 14


@MODELS.register
class Res2Net50_vd_26w_4s(Res2Net_vd):
    layers, scales, width = 50, 4, 26


@MODELS.register
class Res2Net101_vd_26w_4s(Res2Net_vd):
    layers, scales, width = 101, 4, 26


@MODELS.register
class Res2Net200_vd_26w_4s(Res2Net_vd):
    layers, scales, width = 200, 4, 26
