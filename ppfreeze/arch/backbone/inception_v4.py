"""Inception v4 (Szegedy et al. 2016), PaddleClas's ``model_zoo/inception_v4.py`` layout.

Parameter names follow the published ``InceptionV4_pretrained.pdparams``:

    _inception_stem._conv_1|_conv_2|_conv_3|_conv2|_conv1_1.._conv2_4|_conv3 ._conv.weight / ._batch_norm.*
    _inceptionA_<1..4>, _reductionA, _inceptionB_<1..7>, _reductionB, _inceptionC_<1..3>
        .<branch conv>._conv.weight / ._batch_norm.*
    out.{weight,bias}

Every conv is conv (no bias) -> BN -> ReLU.  Forward: stem -> 4 x A -> reduction A -> 7 x B ->
reduction B -> 3 x C -> global average pool -> squeeze -> dropout (``downscale_in_infer``) -> out.
The published model is trained at 299 px.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Tuple, Union

import paddle
import paddle.nn as nn
from paddle import ParamAttr
from paddle.nn.initializer import Uniform

from ..base import ArchModel
from ..registry import MODELS
from .common import check_class_num

Size = Union[int, Tuple[int, int]]


class ConvBNLayer(nn.Layer):
    """Conv (no bias) -> BN -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Size, stride: int = 1,
                 padding: Size = 0):
        super().__init__()
        self._conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                               bias_attr=False)
        self._batch_norm = nn.BatchNorm2D(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.relu(self._batch_norm(self._conv(x)))


class InceptionStem(nn.Layer):
    """Three 3x3 convs, then three split-and-concatenate steps (pool | conv, two conv towers,
    conv | pool) ending at 384 channels.  The max pool layer is used twice."""

    def __init__(self):
        super().__init__()
        self._conv_1 = ConvBNLayer(3, 32, 3, stride=2)
        self._conv_2 = ConvBNLayer(32, 32, 3)
        self._conv_3 = ConvBNLayer(32, 64, 3, padding=1)
        self._pool = nn.MaxPool2D(kernel_size=3, stride=2, padding=0)
        self._conv2 = ConvBNLayer(64, 96, 3, stride=2)
        self._conv1_1 = ConvBNLayer(160, 64, 1)
        self._conv1_2 = ConvBNLayer(64, 96, 3)
        self._conv2_1 = ConvBNLayer(160, 64, 1)
        self._conv2_2 = ConvBNLayer(64, 64, (7, 1), padding=(3, 0))
        self._conv2_3 = ConvBNLayer(64, 64, (1, 7), padding=(0, 3))
        self._conv2_4 = ConvBNLayer(64, 96, 3)
        self._conv3 = ConvBNLayer(192, 192, 3, stride=2)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._conv_3(self._conv_2(self._conv_1(x)))
        x = paddle.concat([self._pool(x), self._conv2(x)], axis=1)
        tower = self._conv2_4(self._conv2_3(self._conv2_2(self._conv2_1(x))))
        x = paddle.concat([self._conv1_2(self._conv1_1(x)), tower], axis=1)
        return paddle.concat([self._conv3(x), self._pool(x)], axis=1)


class InceptionA(nn.Layer):
    """384 -> 384 channels: avg pool -> 1x1 | 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3."""

    def __init__(self):
        super().__init__()
        self._pool = nn.AvgPool2D(kernel_size=3, stride=1, padding=1)
        self._conv1 = ConvBNLayer(384, 96, 1)
        self._conv2 = ConvBNLayer(384, 96, 1)
        self._conv3_1 = ConvBNLayer(384, 64, 1)
        self._conv3_2 = ConvBNLayer(64, 96, 3, padding=1)
        self._conv4_1 = ConvBNLayer(384, 64, 1)
        self._conv4_2 = ConvBNLayer(64, 96, 3, padding=1)
        self._conv4_3 = ConvBNLayer(96, 96, 3, padding=1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return paddle.concat([
            self._conv1(self._pool(x)),
            self._conv2(x),
            self._conv3_2(self._conv3_1(x)),
            self._conv4_3(self._conv4_2(self._conv4_1(x))),
        ], axis=1)


class ReductionA(nn.Layer):
    """384 -> 1024 channels at half the resolution: max pool | 3x3/2 | 1x1 -> 3x3 -> 3x3/2."""

    def __init__(self):
        super().__init__()
        self._pool = nn.MaxPool2D(kernel_size=3, stride=2, padding=0)
        self._conv2 = ConvBNLayer(384, 384, 3, stride=2)
        self._conv3_1 = ConvBNLayer(384, 192, 1)
        self._conv3_2 = ConvBNLayer(192, 224, 3, padding=1)
        self._conv3_3 = ConvBNLayer(224, 256, 3, stride=2)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return paddle.concat([self._pool(x), self._conv2(x), self._conv3_3(self._conv3_2(self._conv3_1(x)))],
                             axis=1)


class InceptionB(nn.Layer):
    """1024 -> 1024 channels with factorised 7x7 towers."""

    def __init__(self):
        super().__init__()
        self._pool = nn.AvgPool2D(kernel_size=3, stride=1, padding=1)
        self._conv1 = ConvBNLayer(1024, 128, 1)
        self._conv2 = ConvBNLayer(1024, 384, 1)
        self._conv3_1 = ConvBNLayer(1024, 192, 1)
        self._conv3_2 = ConvBNLayer(192, 224, (1, 7), padding=(0, 3))
        self._conv3_3 = ConvBNLayer(224, 256, (7, 1), padding=(3, 0))
        self._conv4_1 = ConvBNLayer(1024, 192, 1)
        self._conv4_2 = ConvBNLayer(192, 192, (1, 7), padding=(0, 3))
        self._conv4_3 = ConvBNLayer(192, 224, (7, 1), padding=(3, 0))
        self._conv4_4 = ConvBNLayer(224, 224, (1, 7), padding=(0, 3))
        self._conv4_5 = ConvBNLayer(224, 256, (7, 1), padding=(3, 0))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        tower = self._conv4_3(self._conv4_2(self._conv4_1(x)))
        return paddle.concat([
            self._conv1(self._pool(x)),
            self._conv2(x),
            self._conv3_3(self._conv3_2(self._conv3_1(x))),
            self._conv4_5(self._conv4_4(tower)),
        ], axis=1)


class ReductionB(nn.Layer):
    """1024 -> 1536 channels at half the resolution: max pool | 1x1 -> 3x3/2 | 1x1 -> 1x7 -> 7x1 -> 3x3/2."""

    def __init__(self):
        super().__init__()
        self._pool = nn.MaxPool2D(kernel_size=3, stride=2, padding=0)
        self._conv2_1 = ConvBNLayer(1024, 192, 1)
        self._conv2_2 = ConvBNLayer(192, 192, 3, stride=2)
        self._conv3_1 = ConvBNLayer(1024, 256, 1)
        self._conv3_2 = ConvBNLayer(256, 256, (1, 7), padding=(0, 3))
        self._conv3_3 = ConvBNLayer(256, 320, (7, 1), padding=(3, 0))
        self._conv3_4 = ConvBNLayer(320, 320, 3, stride=2)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        tower = self._conv3_4(self._conv3_3(self._conv3_2(self._conv3_1(x))))
        return paddle.concat([self._pool(x), self._conv2_2(self._conv2_1(x)), tower], axis=1)


class InceptionC(nn.Layer):
    """1536 -> 1536 channels; the 3x3 towers split into parallel 1x3 and 3x1 convs."""

    def __init__(self):
        super().__init__()
        self._pool = nn.AvgPool2D(kernel_size=3, stride=1, padding=1)
        self._conv1 = ConvBNLayer(1536, 256, 1)
        self._conv2 = ConvBNLayer(1536, 256, 1)
        self._conv3_0 = ConvBNLayer(1536, 384, 1)
        self._conv3_1 = ConvBNLayer(384, 256, (1, 3), padding=(0, 1))
        self._conv3_2 = ConvBNLayer(384, 256, (3, 1), padding=(1, 0))
        self._conv4_0 = ConvBNLayer(1536, 384, 1)
        self._conv4_00 = ConvBNLayer(384, 448, (1, 3), padding=(0, 1))
        self._conv4_000 = ConvBNLayer(448, 512, (3, 1), padding=(1, 0))
        self._conv4_1 = ConvBNLayer(512, 256, (1, 3), padding=(0, 1))
        self._conv4_2 = ConvBNLayer(512, 256, (3, 1), padding=(1, 0))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        t3 = self._conv3_0(x)
        t4 = self._conv4_000(self._conv4_00(self._conv4_0(x)))
        return paddle.concat([self._conv1(self._pool(x)), self._conv2(x), self._conv3_1(t3), self._conv3_2(t3),
                              self._conv4_1(t4), self._conv4_2(t4)], axis=1)


@MODELS.register
class InceptionV4(ArchModel):
    """Inception v4.

    Args:
        class_num: classifier width.

    Stages follow the resolution: stem, stage1 (four A blocks, 35x35 at 299 px), stage2
    (reduction A + seven B blocks, 17x17), stage3 (reduction B + three C blocks, 8x8), head.
    """
    min_input_size = 59  # smaller inputs leave an empty map after reduction B

    def __init__(self, class_num: int = 1000):
        super().__init__()
        class_num = check_class_num(class_num)
        self._inception_stem = InceptionStem()
        stages = OrderedDict(stem=["_inception_stem"], stage1=[], stage2=["_reductionA"], stage3=["_reductionB"])
        for i in range(1, 5):
            stages["stage1"].append(self._add(f"_inceptionA_{i}", InceptionA()))
        self._reductionA = ReductionA()
        for i in range(1, 8):
            stages["stage2"].append(self._add(f"_inceptionB_{i}", InceptionB()))
        self._reductionB = ReductionB()
        for i in range(1, 4):
            stages["stage3"].append(self._add(f"_inceptionC_{i}", InceptionC()))
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.flatten = nn.Flatten(start_axis=1, stop_axis=-1)
        self._drop = nn.Dropout(p=0.2, mode="downscale_in_infer")
        bound = 1.0 / math.sqrt(1536)
        self.out = nn.Linear(1536, class_num, weight_attr=ParamAttr(initializer=Uniform(-bound, bound)))
        stages["head"] = ["avg_pool", "flatten", "_drop", "out"]

        self.class_num = class_num
        self.num_features = 1536
        self.stages = stages
        self._body = [unit for name in ("stage1", "stage2", "stage3") for unit in stages[name]]

    def _add(self, name: str, layer: nn.Layer) -> str:
        self.add_sublayer(name, layer)
        return name

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._inception_stem(x)
        for name in self._body:
            x = self._sub_layers[name](x)
        x = self.flatten(self.avg_pool(x))
        return self.out(self._drop(x))
