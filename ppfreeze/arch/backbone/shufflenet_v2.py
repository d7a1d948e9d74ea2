"""ShuffleNetV2 (Ma et al. 2018): channel split + shuffle units, PaddleClas layout.

Parameter names follow PaddleClas's ``model_zoo/shufflenet_v2.py`` (the layout of the published
``ShuffleNetV2_*_pretrained.pdparams``); its units hang off the root as ``<stage>_<unit>``,
with the paper's stage numbers 2..4:

    _conv1._conv.weight, _conv1._batch_norm.*                         stem (3x3, stride 2, then max pool)
    2_1 (downsampling unit): _conv_dw_1, _conv_linear_1 | _conv_pw_2, _conv_dw_2, _conv_linear_2
    2_2 .. : _conv_pw, _conv_dw, _conv_linear (on half of the channels)
    _last_conv (1x1), _fc.weight, _fc.bias

Forward: _conv1 -> _max_pool -> units -> _last_conv -> _pool2d_avg -> flatten -> _fc.
``flatten`` is our addition (no parameters; PaddleClas flattens functionally) so that retrieval
configs can cut the network there.  Our stages: stem = _conv1 + _max_pool, stage1 = 2_*,
stage2 = 3_*, stage3 = 4_* (paper stages 2..4), head = _last_conv onwards.
"""
from __future__ import annotations

from typing import List, Optional

import paddle
import paddle.nn as nn
from paddle.nn.initializer import KaimingNormal

from ...config.errors import ConfigError
from ..base import ArchModel
from ..registry import MODELS
from .common import ConvBNAct, channel_shuffle, check_class_num, check_choice, stage_map

UNITS_PER_STAGE = (4, 8, 4)
# scale -> (stem, stage 2, stage 3, stage 4, last conv) output channels
CHANNELS = {
    0.25: (24, 24, 48, 96, 512),
    0.33: (24, 32, 64, 128, 512),
    0.5: (24, 48, 96, 192, 1024),
    1.0: (24, 116, 232, 464, 1024),
    1.5: (24, 176, 352, 704, 1024),
    2.0: (24, 244, 488, 976, 2048),
}
NAMES = ("_conv", "_batch_norm", "_act")
ACTS = ("relu", "swish")


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
             act: Optional[str] = None) -> ConvBNAct:
    return ConvBNAct(in_channels, out_channels, kernel_size, stride, groups=groups, act=act, names=NAMES,
                     conv_init=KaimingNormal())


class InvertedResidual(nn.Layer):
    """Stride-1 unit: the second half of the channels goes through 1x1 -> 3x3 depthwise -> 1x1,
    the first half passes through; then the halves are concatenated and shuffled."""

    def __init__(self, channels: int, act: str):
        super().__init__()
        half = channels // 2
        self._conv_pw = _conv_bn(half, half, 1, act=act)
        self._conv_dw = _conv_bn(half, half, 3, groups=half)
        self._conv_linear = _conv_bn(half, half, 1, act=act)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x1, x2 = paddle.split(x, 2, axis=1)
        x2 = self._conv_linear(self._conv_dw(self._conv_pw(x2)))
        return channel_shuffle(paddle.concat([x1, x2], axis=1), 2)


class InvertedResidualDS(nn.Layer):
    """Downsampling unit: two strided branches on the full input (3x3 depthwise -> 1x1, and
    1x1 -> 3x3 depthwise -> 1x1), each giving half of the output channels, then a shuffle."""

    def __init__(self, in_channels: int, out_channels: int, act: str):
        super().__init__()
        half = out_channels // 2
        self._conv_dw_1 = _conv_bn(in_channels, in_channels, 3, 2, groups=in_channels)
        self._conv_linear_1 = _conv_bn(in_channels, half, 1, act=act)
        self._conv_pw_2 = _conv_bn(in_channels, half, 1, act=act)
        self._conv_dw_2 = _conv_bn(half, half, 3, 2, groups=half)
        self._conv_linear_2 = _conv_bn(half, half, 1, act=act)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x1 = self._conv_linear_1(self._conv_dw_1(x))
        x2 = self._conv_linear_2(self._conv_dw_2(self._conv_pw_2(x)))
        return channel_shuffle(paddle.concat([x1, x2], axis=1), 2)


class ShuffleNetV2(ArchModel):
    """ShuffleNetV2; the registered subclasses fix ``scale`` (one of ``CHANNELS``) and the
    default activation.

    Args:
        class_num: classifier width.
        act: "relu" or "swish" (ShuffleNetV2_swish is the x1_0 model with swish).
    """
    scale: float = 1.0
    default_act: str = "relu"

    def __init__(self, class_num: int = 1000, act: Optional[str] = None):
        super().__init__()
        class_num = check_class_num(class_num)
        act = self._resolve_act(act)
        stem, *stage_channels, last = CHANNELS[self.scale]

        self._conv1 = _conv_bn(3, stem, 3, 2, act=act)
        self._max_pool = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)
        self.unit_names: List[str] = []
        groups: List[List[str]] = []
        in_channels = stem
        for stage, (units, channels) in enumerate(zip(UNITS_PER_STAGE, stage_channels), 2):
            names = [f"{stage}_{i}" for i in range(1, units + 1)]
            self.add_sublayer(names[0], InvertedResidualDS(in_channels, channels, act))
            for name in names[1:]:
                self.add_sublayer(name, InvertedResidual(channels, act))
            self.unit_names += names
            groups.append(names)
            in_channels = channels
        self._last_conv = _conv_bn(in_channels, last, 1, act=act)
        self._pool2d_avg = nn.AdaptiveAvgPool2D(1)
        self.flatten = nn.Flatten(start_axis=1, stop_axis=-1)
        self._fc = nn.Linear(last, class_num)

        self.class_num = class_num
        self.num_features = last
        self.stages = stage_map(["_conv1", "_max_pool"], groups, ["_last_conv", "_pool2d_avg", "flatten", "_fc"])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._max_pool(self._conv1(x))
        for name in self.unit_names:
            x = getattr(self, name)(x)
        x = self._last_conv(x)
        x = self._pool2d_avg(x)
        x = self.flatten(x)
        return self._fc(x)

    def _resolve_act(self, act: Optional[str]) -> str:
        if act is None:
            return self.default_act
        check_choice(act, ACTS, "act")
        if self.default_act != "relu" and act != self.default_act:
            raise ConfigError("act", f"{type(self).__name__} uses {self.default_act}, got {act!r}",
                              "use ShuffleNetV2_x1_0 with act: relu")
        return act


@MODELS.register
class ShuffleNetV2_x0_25(ShuffleNetV2):
    scale = 0.25


@MODELS.register
class ShuffleNetV2_x0_33(ShuffleNetV2):
    scale = 0.33


@MODELS.register
class ShuffleNetV2_x0_5(ShuffleNetV2):
    scale = 0.5


@MODELS.register
class ShuffleNetV2_x1_0(ShuffleNetV2):
    scale = 1.0


@MODELS.register
class ShuffleNetV2_x1_5(ShuffleNetV2):
    scale = 1.5


@MODELS.register
class ShuffleNetV2_x2_0(ShuffleNetV2):
    scale = 2.0


@MODELS.register
class ShuffleNetV2_swish(ShuffleNetV2):
    scale, default_act = 1.0, "swish"
