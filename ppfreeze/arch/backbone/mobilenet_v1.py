"""MobileNetV1 (Howard et al. 2017): 13 depthwise-separable blocks, PaddleClas layout.

Parameter names follow PaddleClas's ``legendary_models/mobilenet_v1.py`` (the layout of the
published ``MobileNetV1*_pretrained.pdparams``):

    conv.conv.weight, conv.bn.*                                   stem (3x3, stride 2)
    blocks.<i>.depthwise_conv / pointwise_conv . conv|bn . ...    i = 0..12
    fc.weight, fc.bias

Forward: conv -> blocks -> avg_pool -> flatten -> fc.  Stages split the blocks where the
resolution halves: stage1 = blocks.0, stage2 = 1-2, stage3 = 3-4, stage4 = 5-10, stage5 = 11-12.
"""
from __future__ import annotations

import paddle
import paddle.nn as nn
from paddle.nn.initializer import KaimingNormal

from ..base import ArchModel
from ..registry import MODELS
from .common import ConvBNAct, check_class_num, param_attr, split_at_downsampling, stage_map

# per block: (in_channels, out_channels, stride) at scale 1.0
BLOCKS = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2)] \
    + [(512, 512, 1)] * 5 + [(512, 1024, 2), (1024, 1024, 1)]
STEM_CHANNELS = 32


def _width(channels: int, scale: float) -> int:
    """Scaled channel count; PaddleClas truncates (no rounding to a multiple of 8 in this model)."""
    return int(channels * scale)


class DepthwiseSeparable(nn.Layer):
    """Depthwise 3x3 conv (the block's stride) -> pointwise 1x1 conv, each with BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.depthwise_conv = ConvBNAct(in_channels, in_channels, 3, stride, groups=in_channels, act="relu",
                                        names=("conv", "bn", "relu"), conv_init=KaimingNormal())
        self.pointwise_conv = ConvBNAct(in_channels, out_channels, 1, act="relu",
                                        names=("conv", "bn", "relu"), conv_init=KaimingNormal())

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


@MODELS.register
class MobileNetV1(ArchModel):
    """MobileNetV1; the ``_x*`` variants below fix a narrower width ``scale``.

    Args:
        class_num: classifier width.
    """
    scale: float = 1.0

    def __init__(self, class_num: int = 1000):
        super().__init__()
        class_num = check_class_num(class_num)
        scale = self.scale
        self.conv = ConvBNAct(3, _width(STEM_CHANNELS, scale), 3, 2, act="relu", names=("conv", "bn", "relu"),
                              conv_init=KaimingNormal())
        self.blocks = nn.Sequential(*[DepthwiseSeparable(_width(c_in, scale), _width(c_out, scale), stride)
                                      for c_in, c_out, stride in BLOCKS])
        num_features = _width(BLOCKS[-1][1], scale)
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.flatten = nn.Flatten(start_axis=1, stop_axis=-1)
        self.fc = nn.Linear(num_features, class_num, weight_attr=param_attr(initializer=KaimingNormal()))

        self.class_num = class_num
        self.num_features = num_features
        groups = split_at_downsampling([f"blocks.{i}" for i in range(len(BLOCKS))], [s for _, _, s in BLOCKS])
        self.stages = stage_map(["conv"], groups, ["avg_pool", "flatten", "fc"])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.conv(x)
        x = self.blocks(x)
        x = self.avg_pool(x)
        x = self.flatten(x)
        return self.fc(x)


@MODELS.register
class MobileNetV1_x0_25(MobileNetV1):
    scale = 0.25


@MODELS.register
class MobileNetV1_x0_5(MobileNetV1):
    scale = 0.5


@MODELS.register
class MobileNetV1_x0_75(MobileNetV1):
    scale = 0.75
