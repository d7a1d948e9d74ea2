"""MobileNetV2 (Sandler et al. 2018): inverted residuals with linear bottlenecks, PaddleClas layout.

Parameter names follow PaddleClas's ``model_zoo/mobilenet_v2.py`` (the layout of the published
``MobileNetV2*_pretrained.pdparams``); its blocks hang off the root as ``conv2``..``conv8``:

    conv1._conv.weight, conv1._batch_norm.*                              stem (3x3, stride 2)
    conv<g>._first_block / conv<g>.conv<g>_<j> . _expand_conv|_bottleneck_conv|_linear_conv . ...
    conv9 (1x1 to 1280), out.weight, out.bias (the classifier)

Forward: conv1 -> conv2..conv8 -> conv9 -> pool2d_avg -> flatten -> out.  ``flatten`` is our
addition (no parameters; PaddleClas flattens functionally) so that retrieval configs can cut
the network there (``BackboneStopLayer: flatten``).  Stages split the groups where the
resolution halves: stage1 = conv2, stage2 = conv3, stage3 = conv4, stage4 = conv5 + conv6,
stage5 = conv7 + conv8; head = conv9 onwards.
"""
from __future__ import annotations

from typing import List

import paddle
import paddle.nn as nn

from ..base import ArchModel
from ..registry import MODELS
from .common import ConvBNAct, check_class_num, check_choice, split_at_downsampling, stage_map

# per group conv2..conv8: (expansion, out_channels, blocks, first stride) at scale 1.0
GROUPS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
STEM_CHANNELS = 32
LAST_CHANNELS = 1280
NAMES = ("_conv", "_batch_norm", "_act")  # PaddleClas's sublayer names in this model (the act has no parameters)


class InvertedResidualUnit(nn.Layer):
    """1x1 expand (ReLU6) -> 3x3 depthwise (ReLU6) -> 1x1 linear projection, plus the input when
    ``shortcut`` (every block of a group but the first)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int, shortcut: bool):
        super().__init__()
        hidden = int(round(in_channels * expansion))
        self._expand_conv = ConvBNAct(in_channels, hidden, 1, act="relu6", names=NAMES)
        self._bottleneck_conv = ConvBNAct(hidden, hidden, 3, stride, groups=hidden, act="relu6", names=NAMES)
        self._linear_conv = ConvBNAct(hidden, out_channels, 1, act=None, names=NAMES)
        self.shortcut = shortcut

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self._linear_conv(self._bottleneck_conv(self._expand_conv(x)))
        return x + y if self.shortcut else y


class InvertedResidualGroup(nn.Layer):
    """``blocks`` inverted residual units; the first (``_first_block``) changes width and stride.
    The others are registered as ``<name>_2``, ``<name>_3``, ... as in PaddleClas."""

    def __init__(self, name: str, in_channels: int, out_channels: int, blocks: int, stride: int, expansion: int):
        super().__init__()
        self._first_block = InvertedResidualUnit(in_channels, out_channels, stride, expansion, shortcut=False)
        self.unit_names: List[str] = [f"{name}_{j}" for j in range(2, blocks + 1)]
        for unit in self.unit_names:
            self.add_sublayer(unit, InvertedResidualUnit(out_channels, out_channels, 1, expansion, shortcut=True))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._first_block(x)
        for unit in self.unit_names:
            x = getattr(self, unit)(x)
        return x


@MODELS.register
class MobileNetV2(ArchModel):
    """MobileNetV2; the ``_x*`` variants below fix another width ``scale``.

    Args:
        class_num: classifier width.
        data_format: only "NCHW".
    """
    scale: float = 1.0

    def __init__(self, class_num: int = 1000, data_format: str = "NCHW"):
        super().__init__()
        class_num = check_class_num(class_num)
        check_choice(data_format, ("NCHW",), "data_format", "ppfreeze runs NCHW only; remove data_format")
        scale = self.scale
        in_channels = int(STEM_CHANNELS * scale)
        self.conv1 = ConvBNAct(3, in_channels, 3, 2, act="relu6", names=NAMES)
        self.group_names: List[str] = []
        for n, (expansion, channels, blocks, stride) in enumerate(GROUPS, 2):
            name = f"conv{n}"
            out_channels = int(channels * scale)
            self.add_sublayer(name, InvertedResidualGroup(name, in_channels, out_channels, blocks, stride, expansion))
            self.group_names.append(name)
            in_channels = out_channels
        # the last conv widens with the scale but never narrows below 1280
        num_features = int(LAST_CHANNELS * scale) if scale > 1.0 else LAST_CHANNELS
        self.conv9 = ConvBNAct(in_channels, num_features, 1, act="relu6", names=NAMES)
        self.pool2d_avg = nn.AdaptiveAvgPool2D(1)
        self.flatten = nn.Flatten(start_axis=1, stop_axis=-1)
        self.out = nn.Linear(num_features, class_num)

        self.class_num = class_num
        self.num_features = num_features
        groups = split_at_downsampling(self.group_names, [g[3] for g in GROUPS])
        self.stages = stage_map(["conv1"], groups, ["conv9", "pool2d_avg", "flatten", "out"])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.conv1(x)
        for name in self.group_names:
            x = getattr(self, name)(x)
        x = self.conv9(x)
        x = self.pool2d_avg(x)
        x = self.flatten(x)
        return self.out(x)


@MODELS.register
class MobileNetV2_x0_25(MobileNetV2):
    scale = 0.25


@MODELS.register
class MobileNetV2_x0_5(MobileNetV2):
    scale = 0.5


@MODELS.register
class MobileNetV2_x0_75(MobileNetV2):
    scale = 0.75


@MODELS.register
class MobileNetV2_x1_5(MobileNetV2):
    scale = 1.5


@MODELS.register
class MobileNetV2_x2_0(MobileNetV2):
    scale = 2.0
