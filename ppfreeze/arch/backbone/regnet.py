"""RegNetX (Radosavovic et al. 2020): ResNeXt-style bottleneck stages whose widths follow a
quantised linear rule ``w_j = w_0 + w_a * j`` (pycls's design space).

Parameter names follow PaddleClas's ``model_zoo/regnet.py``, so the published
``RegNetX_*_pretrained.pdparams`` load as-is:

    conv._conv.weight, conv._batch_norm.*                       stem: 3x3 stride-2 conv, 32 channels
    s<stage>_b<block> . conv0 | conv1 | [se_block] | conv2 | [short] . _conv|_batch_norm
    out.weight, out.bias                                        classifier

Forward: conv -> s1_b1 ... s4_bN -> pool2d_avg -> flatten -> out.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import paddle
import paddle.nn as nn
from paddle.nn.initializer import Uniform

from ...config.errors import ConfigError
from ...config.expr import to_number
from ..base import ArchModel
from ..registry import MODELS
from .common import check_bool, check_class_num, int_list, param_attr

STEM_WIDTH = 32
SE_RATIO = 0.25


def stage_widths(w_a: float, w_0: int, w_m: float, d: int, q: int, group_w: int,
                 bot_mul: float) -> List[Tuple[int, int, int]]:
    """Per stage ``(depth, width, group width)`` of a RegNet with these design parameters.

    Block j has the continuous width ``w_0 + w_a * j``, snapped to ``w_0 * w_m**k`` (integer k)
    and to a multiple of ``q``; runs of equal width form the stages. The bottleneck width is then
    made a multiple of the group width (as pycls does)."""
    continuous = np.arange(d) * w_a + w_0
    exponents = np.round(np.log(continuous / w_0) / np.log(w_m))
    block_widths = (np.round(w_0 * np.power(w_m, exponents) / q) * q).astype(int).tolist()
    widths: List[int] = []
    depths: List[int] = []
    for width in block_widths:
        if widths and widths[-1] == width:
            depths[-1] += 1
        else:
            widths.append(width)
            depths.append(1)
    stages = []
    for depth, width in zip(depths, widths):
        bottleneck = int(width * bot_mul)
        group = min(group_w, bottleneck)
        bottleneck = int(round(bottleneck / group) * group)
        stages.append((depth, int(bottleneck / bot_mul), group))
    return stages


class ConvBNLayer(nn.Layer):
    """Conv (no bias) -> BN -> optional ReLU (PaddleClas's names ``_conv``, ``_batch_norm``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
                 padding: int = 0, act: Optional[str] = None):
        super().__init__()
        self._conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                               groups=groups, bias_attr=False)
        self._batch_norm = nn.BatchNorm2D(out_channels)
        self.relu = nn.ReLU() if act == "relu" else None

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._batch_norm(self._conv(x))
        return self.relu(x) if self.relu is not None else x


class SELayer(nn.Layer):
    """Squeeze-excitation with Linear layers (used when ``se_on``; RegNetX has none)."""

    def __init__(self, channels: int, reduction_ratio: int):
        super().__init__()
        mid = int(channels / reduction_ratio)
        self.pool2d_gap = nn.AdaptiveAvgPool2D(1)
        bound = 1.0 / math.sqrt(channels)
        self.squeeze = nn.Linear(channels, mid, weight_attr=param_attr(initializer=Uniform(-bound, bound)))
        bound = 1.0 / math.sqrt(mid)
        self.excitation = nn.Linear(mid, channels, weight_attr=param_attr(initializer=Uniform(-bound, bound)))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        gate = self.pool2d_gap(x).flatten(1)
        gate = nn.functional.sigmoid(self.excitation(nn.functional.relu(self.squeeze(gate))))
        return x * gate.unsqueeze([2, 3])


class BottleneckBlock(nn.Layer):
    """1x1 -> grouped 3x3 (strided) -> [SE] -> 1x1, plus the (projected) residual, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, bot_mul: float, group_w: int,
                 se_on: bool, projection: bool):
        super().__init__()
        width = int(round(out_channels * bot_mul))
        self.conv0 = ConvBNLayer(in_channels, width, 1, act="relu")
        self.conv1 = ConvBNLayer(width, width, 3, stride=stride, groups=width // group_w, padding=1, act="relu")
        self.se_block = SELayer(width, int(round(in_channels * SE_RATIO))) if se_on else None
        self.conv2 = ConvBNLayer(width, out_channels, 1)
        self.short = ConvBNLayer(in_channels, out_channels, 1, stride=stride) if projection else None
        self.relu = nn.ReLU()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self.conv1(self.conv0(x))
        if self.se_block is not None:
            y = self.se_block(y)
        y = self.conv2(y)
        shortcut = self.short(x) if self.short is not None else x
        return self.relu(shortcut + y)


class RegNet(ArchModel):
    """RegNet; subclasses fix the defaults of the design parameters.

    Args:
        class_num: classifier width.
        w_a, w_0, w_m, d: slope, initial width, width multiplier and depth of the width rule.
        group_w: group width of the 3x3 convs.
        bot_mul: bottleneck multiplier.
        q: widths are multiples of q.
        se_on: squeeze-excitation in every block (RegNetY; the registered RegNetX models have none).
    """
    design: Dict[str, Any] = {}

    def __init__(self, class_num: int = 1000, w_a: Any = None, w_0: Optional[int] = None, w_m: Any = None,
                 d: Optional[int] = None, group_w: Optional[int] = None, bot_mul: Any = None, q: Optional[int] = None,
                 se_on: bool = False):
        super().__init__()
        class_num = check_class_num(class_num)
        given = dict(w_a=w_a, w_0=w_0, w_m=w_m, d=d, group_w=group_w, bot_mul=bot_mul, q=q)
        p = {k: self.design[k] if v is None else v for k, v in given.items()}
        w_a, w_m, bot_mul = (float(to_number(p[k], k)) for k in ("w_a", "w_m", "bot_mul"))
        w_0, d, group_w, q = (int_list([p[k]], 1, k)[0] for k in ("w_0", "d", "group_w", "q"))
        se_on = check_bool(se_on, "se_on")
        if w_a < 0 or w_m <= 1 or w_0 % q or bot_mul <= 0:
            raise ConfigError("w_a" if w_a < 0 else "w_m" if w_m <= 1 else "w_0" if w_0 % q else "bot_mul",
                              f"RegNet needs w_a >= 0, w_m > 1, w_0 a multiple of q and bot_mul > 0; got "
                              f"w_a={w_a}, w_m={w_m}, w_0={w_0}, q={q}, bot_mul={bot_mul}")

        self.conv = ConvBNLayer(3, STEM_WIDTH, 3, stride=2, padding=1, act="relu")
        in_channels = STEM_WIDTH
        stage_units: List[List[str]] = []
        for s, (depth, width, group) in enumerate(stage_widths(w_a, w_0, w_m, d, q, group_w, bot_mul), 1):
            units = []
            for b in range(1, depth + 1):
                name = f"s{s}_b{b}"
                self.add_sublayer(name, BottleneckBlock(in_channels, width, stride=2 if b == 1 else 1,
                                                        bot_mul=bot_mul, group_w=group, se_on=se_on,
                                                        projection=b == 1))
                units.append(name)
                in_channels = width
            stage_units.append(units)
        self.block_names = [u for units in stage_units for u in units]
        self.pool2d_avg = nn.AdaptiveAvgPool2D(1)
        self.flatten = nn.Flatten()  # PaddleClas reshapes; a sublayer lets BackboneStopLayer cut here
        bound = 1.0 / math.sqrt(in_channels)
        self.out = nn.Linear(in_channels, class_num, weight_attr=param_attr(initializer=Uniform(-bound, bound)))

        self.class_num = class_num
        self.num_features = in_channels
        stages = [("stem", ["conv"])] + [(f"stage{s}", units) for s, units in enumerate(stage_units, 1)]
        self.stages = OrderedDict(stages + [("head", ["pool2d_avg", "flatten", "out"])])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.conv(x)
        for name in self.block_names:
            x = getattr(self, name)(x)
        x = self.flatten(self.pool2d_avg(x))
        return self.out(x)


def _regnetx(w_a: float, w_0: int, w_m: float, d: int, group_w: int) -> Dict[str, Any]:
    return dict(w_a=w_a, w_0=w_0, w_m=w_m, d=d, group_w=group_w, bot_mul=1.0, q=8)


@MODELS.register
class RegNetX_200MF(RegNet):
    design = _regnetx(36.44, 24, 2.49, 13, 8)


@MODELS.register
class RegNetX_400MF(RegNet):
    design = _regnetx(24.48, 24, 2.54, 22, 16)


@MODELS.register
class RegNetX_600MF(RegNet):
    design = _regnetx(36.97, 48, 2.24, 16, 24)


@MODELS.register
class RegNetX_800MF(RegNet):
    design = _regnetx(35.73, 56, 2.28, 16, 16)


@MODELS.register
class RegNetX_1600MF(RegNet):
    design = _regnetx(34.01, 80, 2.25, 18, 24)


@MODELS.register
class RegNetX_3200MF(RegNet):
    design = _regnetx(26.31, 88, 2.25, 25, 48)


@MODELS.register
class RegNetX_4GF(RegNet):
    design = _regnetx(38.65, 96, 2.43, 23, 40)


@MODELS.register
class RegNetX_6400MF(RegNet):
    design = _regnetx(60.83, 184, 2.07, 17, 56)


@MODELS.register
class RegNetX_8GF(RegNet):
    design = _regnetx(49.56, 80, 2.88, 23, 120)


@MODELS.register
class RegNetX_12GF(RegNet):
    design = _regnetx(73.36, 168, 2.37, 19, 112)


@MODELS.register
class RegNetX_16GF(RegNet):
    design = _regnetx(55.59, 216, 2.1, 22, 128)


@MODELS.register
class RegNetX_32GF(RegNet):
    design = _regnetx(69.86, 320, 2.0, 23, 168)
