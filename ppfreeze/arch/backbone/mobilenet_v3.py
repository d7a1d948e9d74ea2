"""MobileNetV3 small and large (Howard et al. 2019), PaddleClas layout.

Parameter names follow PaddleClas's ``legendary_models/mobilenet_v3.py`` (the layout of the
published ``MobileNetV3_*_pretrained.pdparams``):

    conv.conv.weight, conv.bn.*                                          stem (3x3, stride 2)
    blocks.<i>.expand_conv / bottleneck_conv / [mid_se.conv1|conv2] / linear_conv
    last_second_conv.conv|bn (1x1), last_conv.weight (1x1 after pooling, no bias), fc.weight, fc.bias

Forward: conv -> blocks -> last_second_conv -> avg_pool -> last_conv -> hardswish -> dropout
-> flatten -> fc.  Stages split the blocks where the resolution halves (large: 5 stages,
blocks 0 | 1-2 | 3-5 | 6-11 | 12-14; small: 4 stages, 0 | 1-2 | 3-7 | 8-10); the head is
everything from ``last_second_conv`` on.
"""
from __future__ import annotations

from typing import Optional

import paddle
import paddle.nn as nn

from ..base import ArchModel
from ..registry import MODELS
from .common import (ConvBNAct, SEModule, check_class_num, check_positive_int, check_probability, make_divisible,
                     split_at_downsampling, stage_map)

# per block: (kernel, expanded channels, out channels, use_se, activation, stride) at scale 1.0
NET_CONFIG = {
    "large": [
        (3, 16, 16, False, "relu", 1),
        (3, 64, 24, False, "relu", 2),
        (3, 72, 24, False, "relu", 1),
        (5, 72, 40, True, "relu", 2),
        (5, 120, 40, True, "relu", 1),
        (5, 120, 40, True, "relu", 1),
        (3, 240, 80, False, "hardswish", 2),
        (3, 200, 80, False, "hardswish", 1),
        (3, 184, 80, False, "hardswish", 1),
        (3, 184, 80, False, "hardswish", 1),
        (3, 480, 112, True, "hardswish", 1),
        (3, 672, 112, True, "hardswish", 1),
        (5, 672, 160, True, "hardswish", 2),
        (5, 960, 160, True, "hardswish", 1),
        (5, 960, 160, True, "hardswish", 1),
    ],
    "small": [
        (3, 16, 16, True, "relu", 2),
        (3, 72, 24, False, "relu", 2),
        (3, 88, 24, False, "relu", 1),
        (5, 96, 40, True, "hardswish", 2),
        (5, 240, 40, True, "hardswish", 1),
        (5, 240, 40, True, "hardswish", 1),
        (5, 120, 48, True, "hardswish", 1),
        (5, 144, 48, True, "hardswish", 1),
        (5, 288, 96, True, "hardswish", 2),
        (5, 576, 96, True, "hardswish", 1),
        (5, 576, 96, True, "hardswish", 1),
    ],
}
# channels of last_second_conv (before pooling), at scale 1.0
CLASS_SQUEEZE = {"large": 960, "small": 576}
SE_GATE_SLOPE = 0.2  # MobileNetV3's hard sigmoid (PP-LCNet uses 1/6)


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
             act: Optional[str] = None) -> ConvBNAct:
    """Conv -> BN (no weight decay on BN, as in PaddleClas) -> optional activation."""
    return ConvBNAct(in_channels, out_channels, kernel_size, stride, groups=groups, act=act, bn_no_decay=True)


class ResidualUnit(nn.Layer):
    """1x1 expand -> kxk depthwise -> optional SE -> 1x1 linear, plus the input when the shape allows."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, kernel_size: int, stride: int,
                 use_se: bool, act: str):
        super().__init__()
        self.expand_conv = _conv_bn(in_channels, mid_channels, 1, act=act)
        self.bottleneck_conv = _conv_bn(mid_channels, mid_channels, kernel_size, stride, groups=mid_channels, act=act)
        self.mid_se = SEModule(mid_channels, gate_slope=SE_GATE_SLOPE) if use_se else None
        self.linear_conv = _conv_bn(mid_channels, out_channels, 1)
        self.shortcut = stride == 1 and in_channels == out_channels

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self.bottleneck_conv(self.expand_conv(x))
        if self.mid_se is not None:
            y = self.mid_se(y)
        y = self.linear_conv(y)
        return x + y if self.shortcut else y


class MobileNetV3(ArchModel):
    """MobileNetV3; the registered subclasses fix ``config`` ("small" or "large") and ``scale``.

    Args:
        class_num: classifier width.
        inplanes: stem channels at scale 1.0.
        class_expand: channels of the 1x1 ``last_conv`` after pooling (the features fc reads).
        dropout_prob: dropout before the classifier; ``None`` (``null``) removes the layer.
    """
    config: str = ""
    scale: float = 1.0

    def __init__(self, class_num: int = 1000, inplanes: int = 16, class_expand: int = 1280,
                 dropout_prob: Optional[float] = 0.2):
        super().__init__()
        class_num = check_class_num(class_num)
        inplanes = check_positive_int(inplanes, "inplanes")
        class_expand = check_positive_int(class_expand, "class_expand")
        cfg, scale = NET_CONFIG[self.config], self.scale

        self.conv = _conv_bn(3, make_divisible(inplanes * scale), 3, 2, act="hardswish")
        in_channels = [inplanes] + [c for _, _, c, _, _, _ in cfg[:-1]]
        self.blocks = nn.Sequential(*[
            ResidualUnit(make_divisible(c_in * scale), make_divisible(exp * scale), make_divisible(c * scale),
                         k, s, se, act)
            for c_in, (k, exp, c, se, act, s) in zip(in_channels, cfg)])
        squeeze = make_divisible(CLASS_SQUEEZE[self.config] * scale)
        self.last_second_conv = _conv_bn(make_divisible(cfg[-1][2] * scale), squeeze, 1, act="hardswish")
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.last_conv = nn.Conv2D(squeeze, class_expand, 1, bias_attr=False)
        self.hardswish = nn.Hardswish()
        self.dropout = None if dropout_prob is None else \
            nn.Dropout(p=check_probability(dropout_prob, "dropout_prob"), mode="downscale_in_infer")
        self.flatten = nn.Flatten(start_axis=1, stop_axis=-1)
        self.fc = nn.Linear(class_expand, class_num)

        self.class_num = class_num
        self.num_features = class_expand
        groups = split_at_downsampling([f"blocks.{i}" for i in range(len(cfg))], [b[5] for b in cfg])
        head = ["last_second_conv", "avg_pool", "last_conv", "hardswish", "dropout", "flatten", "fc"]
        self.stages = stage_map(["conv"], groups, [h for h in head if getattr(self, h) is not None])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.conv(x)
        x = self.blocks(x)
        x = self.last_second_conv(x)
        x = self.avg_pool(x)
        x = self.hardswish(self.last_conv(x))
        if self.dropout is not None:
            x = self.dropout(x)
        x = self.flatten(x)
        return self.fc(x)


@MODELS.register
class MobileNetV3_small_x0_35(MobileNetV3):
    config, scale = "small", 0.35


@MODELS.register
class MobileNetV3_small_x0_5(MobileNetV3):
    config, scale = "small", 0.5


@MODELS.register
class MobileNetV3_small_x0_75(MobileNetV3):
    config, scale = "small", 0.75


@MODELS.register
class MobileNetV3_small_x1_0(MobileNetV3):
    config, scale = "small", 1.0


@MODELS.register
class MobileNetV3_small_x1_25(MobileNetV3):
    config, scale = "small", 1.25


@MODELS.register
class MobileNetV3_large_x0_35(MobileNetV3):
    config, scale = "large", 0.35


@MODELS.register
class MobileNetV3_large_x0_5(MobileNetV3):
    config, scale = "large", 0.5


@MODELS.register
class MobileNetV3_large_x0_75(MobileNetV3):
    config, scale = "large", 0.75


@MODELS.register
class MobileNetV3_large_x1_0(MobileNetV3):
    config, scale = "large", 1.0


@MODELS.register
class MobileNetV3_large_x1_25(MobileNetV3):
    config, scale = "large", 1.25
