"""ESNet (Enhanced ShuffleNet, from PP-PicoDet, Yu et al. 2021), PaddleClas layout.

Parameter names follow PaddleClas's ``legendary_models/esnet.py`` (the layout of the published
``ESNet_x*_pretrained.pdparams``):

    conv1.conv.weight, conv1.bn.*                                   stem (3x3, stride 2, then max pool)
    blocks.<i> (downsampling): dw_1, pw_1 | pw_2_1, dw_2, se, pw_2_2 | concat_dw, concat_pw
    blocks.<i> (stride 1): pw_1_1, dw_1, se, pw_1_2 (on half of the channels)
    conv2 (1x1), last_conv.weight (1x1 after pooling, no bias), fc.weight, fc.bias

Forward: conv1 -> max_pool -> blocks -> conv2 -> avg_pool -> last_conv -> hardswish -> dropout
-> flatten -> fc.  Stages: stem = conv1 + max_pool, stage1 = blocks 0-2, stage2 = 3-9,
stage3 = 10-12 (one per resolution), head = conv2 onwards.
"""
from __future__ import annotations

import paddle
import paddle.nn as nn
from paddle.nn.initializer import KaimingNormal

from ..base import ArchModel
from ..registry import MODELS
from .common import (ConvBNAct, SEModule, channel_shuffle, check_class_num, check_positive_int, check_probability,
                     make_divisible, stage_map)

BLOCKS_PER_STAGE = (3, 7, 3)
STAGE_CHANNELS = (116, 232, 464)  # scaled and rounded to multiples of 8
STEM_CHANNELS = 24
LAST_CHANNELS = 1024


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
             act: bool = True) -> ConvBNAct:
    """Conv (Kaiming init) -> BN (no weight decay) -> optional hardswish."""
    return ConvBNAct(in_channels, out_channels, kernel_size, stride, groups=groups,
                     act="hardswish" if act else None, names=("conv", "bn", "hardswish"),
                     bn_no_decay=True, conv_init=KaimingNormal())


class ESBlock1(nn.Layer):
    """Stride-1 block on the second half of the channels: 1x1 -> 3x3 depthwise, both concatenated,
    SE, 1x1; the first half passes through; then a channel shuffle."""

    def __init__(self, channels: int):
        super().__init__()
        half = channels // 2
        self.pw_1_1 = _conv_bn(half, half, 1)
        self.dw_1 = _conv_bn(half, half, 3, groups=half, act=False)
        self.se = SEModule(channels)
        self.pw_1_2 = _conv_bn(channels, half, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x1, x2 = paddle.split(x, 2, axis=1)
        x2 = self.pw_1_1(x2)
        x3 = self.pw_1_2(self.se(paddle.concat([x2, self.dw_1(x2)], axis=1)))
        return channel_shuffle(paddle.concat([x1, x3], axis=1), 2)


class ESBlock2(nn.Layer):
    """Downsampling block: two strided branches (3x3 depthwise -> 1x1; 1x1 -> 3x3 depthwise -> SE
    -> 1x1), concatenated, then a 3x3 depthwise and a 1x1 conv mix them."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        half = out_channels // 2
        self.dw_1 = _conv_bn(in_channels, in_channels, 3, 2, groups=in_channels, act=False)
        self.pw_1 = _conv_bn(in_channels, half, 1)
        self.pw_2_1 = _conv_bn(in_channels, half, 1)
        self.dw_2 = _conv_bn(half, half, 3, 2, groups=half, act=False)
        self.se = SEModule(half)
        self.pw_2_2 = _conv_bn(half, half, 1)
        self.concat_dw = _conv_bn(out_channels, out_channels, 3, groups=out_channels)
        self.concat_pw = _conv_bn(out_channels, out_channels, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x1 = self.pw_1(self.dw_1(x))
        x2 = self.pw_2_2(self.se(self.dw_2(self.pw_2_1(x))))
        return self.concat_pw(self.concat_dw(paddle.concat([x1, x2], axis=1)))


class ESNet(ArchModel):
    """ESNet; the registered subclasses fix the width ``scale``.

    Args:
        class_num: classifier width.
        dropout_prob: dropout before the classifier.
        class_expand: channels of the 1x1 ``last_conv`` after pooling (the features fc reads).
    """
    scale: float = 1.0

    def __init__(self, class_num: int = 1000, dropout_prob: float = 0.2, class_expand: int = 1280):
        super().__init__()
        class_num = check_class_num(class_num)
        class_expand = check_positive_int(class_expand, "class_expand")
        dropout_prob = check_probability(dropout_prob, "dropout_prob")

        self.conv1 = _conv_bn(3, STEM_CHANNELS, 3, 2)
        self.max_pool = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)
        blocks, groups = [], []
        in_channels = STEM_CHANNELS
        for blocks_in_stage, channels in zip(BLOCKS_PER_STAGE, STAGE_CHANNELS):
            channels = make_divisible(channels * self.scale)
            groups.append([f"blocks.{len(blocks) + i}" for i in range(blocks_in_stage)])
            blocks += [ESBlock2(in_channels, channels)] + [ESBlock1(channels) for _ in range(blocks_in_stage - 1)]
            in_channels = channels
        self.blocks = nn.Sequential(*blocks)
        self.conv2 = _conv_bn(in_channels, LAST_CHANNELS, 1)
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.last_conv = nn.Conv2D(LAST_CHANNELS, class_expand, 1, bias_attr=False)
        self.hardswish = nn.Hardswish()
        self.dropout = nn.Dropout(p=dropout_prob, mode="downscale_in_infer")
        self.flatten = nn.Flatten(start_axis=1, stop_axis=-1)
        self.fc = nn.Linear(class_expand, class_num)

        self.class_num = class_num
        self.num_features = class_expand
        self.stages = stage_map(["conv1", "max_pool"], groups,
                                ["conv2", "avg_pool", "last_conv", "hardswish", "dropout", "flatten", "fc"])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.max_pool(self.conv1(x))
        x = self.blocks(x)
        x = self.conv2(x)
        x = self.avg_pool(x)
        x = self.hardswish(self.last_conv(x))
        x = self.dropout(x)
        x = self.flatten(x)
        return self.fc(x)


@MODELS.register
class ESNet_x0_25(ESNet):
    scale = 0.25


@MODELS.register
class ESNet_x0_5(ESNet):
    scale = 0.5


@MODELS.register
class ESNet_x0_75(ESNet):
    scale = 0.75


@MODELS.register
class ESNet_x1_0(ESNet):
    scale = 1.0
