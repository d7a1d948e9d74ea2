"""AlexNet (Krizhevsky et al. 2012), PaddleClas's ``model_zoo/alexnet.py`` layout.

Parameter names follow the published ``AlexNet_pretrained.pdparams``:

    _conv1._conv / _conv2._conv .{weight,bias}     conv + ReLU + 3x3/2 max pool
    _conv3 / _conv4 .{weight,bias}                 plain convs (ReLU applied in forward)
    _conv5._conv.{weight,bias}                     conv + ReLU + max pool
    _fc6 / _fc7 / _fc8 .{weight,bias}

Forward: _conv1 -> _conv2 -> _conv3 -> ReLU -> _conv4 -> ReLU -> _conv5 -> flatten -> dropout
-> _fc6 -> ReLU -> dropout -> _fc7 -> ReLU -> _fc8.  _fc6 reads a 6x6x256 map, so the input is
224 px.  The dropouts are ``downscale_in_infer`` (evaluation scales by 0.5), as in PaddleClas.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.nn.initializer import Uniform

from ..base import ArchModel
from ..registry import MODELS
from .common import check_class_num


def _uniform(fan_in: int) -> dict:
    """Weight and bias attributes drawing from U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return dict(weight_attr=ParamAttr(initializer=Uniform(-bound, bound)),
                bias_attr=ParamAttr(initializer=Uniform(-bound, bound)))


class ConvPoolLayer(nn.Layer):
    """Conv -> ReLU -> 3x3 stride-2 max pool."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int):
        super().__init__()
        self.relu = nn.ReLU()
        self._conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                               **_uniform(in_channels * kernel_size * kernel_size))
        self._pool = nn.MaxPool2D(kernel_size=3, stride=2, padding=0)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self._pool(self.relu(self._conv(x)))


@MODELS.register
class AlexNet(ArchModel):
    """AlexNet (PaddleClas's single-tower version, no LRN).

    Args:
        class_num: classifier width.
    """
    input_size = 224

    def __init__(self, class_num: int = 1000):
        super().__init__()
        class_num = check_class_num(class_num)
        self._conv1 = ConvPoolLayer(3, 64, 11, stride=4, padding=2)
        self._conv2 = ConvPoolLayer(64, 192, 5, stride=1, padding=2)
        self._conv3 = nn.Conv2D(192, 384, 3, padding=1, **_uniform(192 * 3 * 3))
        self._conv4 = nn.Conv2D(384, 256, 3, padding=1, **_uniform(384 * 3 * 3))
        self._conv5 = ConvPoolLayer(256, 256, 3, stride=1, padding=1)
        self.flatten = nn.Flatten(start_axis=1, stop_axis=-1)
        fc_fan_in = 256 * 6 * 6  # PaddleClas draws all three fc layers from this range
        self._drop1 = nn.Dropout(p=0.5, mode="downscale_in_infer")
        self._fc6 = nn.Linear(256 * 6 * 6, 4096, **_uniform(fc_fan_in))
        self._drop2 = nn.Dropout(p=0.5, mode="downscale_in_infer")
        self._fc7 = nn.Linear(4096, 4096, **_uniform(fc_fan_in))
        self._fc8 = nn.Linear(4096, class_num, **_uniform(fc_fan_in))

        self.class_num = class_num
        self.num_features = 4096
        self.stages = OrderedDict(stem=["_conv1"], stage1=["_conv2"], stage2=["_conv3"], stage3=["_conv4"],
                                  stage4=["_conv5"], head=["flatten", "_drop1", "_fc6", "_drop2", "_fc7", "_fc8"])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._conv2(self._conv1(x))
        x = F.relu(self._conv3(x))
        x = F.relu(self._conv4(x))
        x = self.flatten(self._conv5(x))
        x = F.relu(self._fc6(self._drop1(x)))
        x = F.relu(self._fc7(self._drop2(x)))
        return self._fc8(x)
