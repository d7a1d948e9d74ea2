"""GoogLeNet / Inception v1 (Szegedy et al. 2014), PaddleClas's ``model_zoo/googlenet.py`` layout.

Parameter names follow the published ``GoogLeNet_pretrained.pdparams``:

    _conv / _conv_1 / _conv_2 ._conv.weight                    stem convs (no bias, no BN)
    _ince<3a..5b>._conv1|_conv3r|_conv3|_conv5r|_conv5|_convprj._conv.weight
    _fc_out.{weight,bias}                                      main classifier
    _conv_o1._conv.weight, _fc_o1, _out1                       auxiliary head on inception 4a
    _conv_o2._conv.weight, _fc_o2, _out2                       auxiliary head on inception 4d

Like PaddleClas, ``forward`` returns ``[logits, aux1_logits, aux2_logits]`` in training *and*
evaluation: configs train it with ``GoogLeNetLoss`` (logits + 0.3 x each auxiliary loss) and
measure ``GoogLeNetTopkAcc`` (top-k of the first output); prediction and export use the first
output.  The auxiliary heads read a 3x3 map (``_fc_o1`` takes 128x3x3 inputs), so the input is
224 px.  Convs have no ReLU of their own: each inception module applies one ReLU to its
concatenated output, and the stem convs run linear, as in PaddleClas.

PaddleClas reuses one ``_pool`` layer for the four 3x3/2 max pools of the trunk; the last three
are their own parameter-free layers here (``_pool2``..``_pool4``) so every stage unit runs once
per forward.  Keys are unchanged.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import List

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.nn.initializer import Uniform

from ...config.errors import ConfigError
from ..base import ArchModel
from ..registry import MODELS
from .common import check_class_num

# module -> (in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection)
INCEPTIONS = OrderedDict([
    ("3a", (192, 64, 96, 128, 16, 32, 32)),
    ("3b", (256, 128, 128, 192, 32, 96, 64)),
    ("4a", (480, 192, 96, 208, 16, 48, 64)),
    ("4b", (512, 160, 112, 224, 24, 64, 64)),
    ("4c", (512, 128, 128, 256, 24, 64, 64)),
    ("4d", (512, 112, 144, 288, 32, 64, 64)),
    ("4e", (528, 256, 160, 320, 32, 128, 128)),
    ("5a", (832, 256, 160, 320, 32, 128, 128)),
    ("5b", (832, 384, 192, 384, 48, 128, 128)),
])


class ConvLayer(nn.Layer):
    """A bare 'same' conv without bias (PaddleClas nests it as ``_conv``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self._conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                               padding=(kernel_size - 1) // 2, bias_attr=False)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self._conv(x)


class Inception(nn.Layer):
    """Four branches (1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 max pool -> 1x1), concatenated, ReLU."""

    def __init__(self, in_channels: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, proj: int):
        super().__init__()
        self._conv1 = ConvLayer(in_channels, c1, 1)
        self._conv3r = ConvLayer(in_channels, c3r, 1)
        self._conv3 = ConvLayer(c3r, c3, 3)
        self._conv5r = ConvLayer(in_channels, c5r, 1)
        self._conv5 = ConvLayer(c5r, c5, 5)
        self._pool = nn.MaxPool2D(kernel_size=3, stride=1, padding=1)
        self._convprj = ConvLayer(in_channels, proj, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        branches = [self._conv1(x), self._conv3(self._conv3r(x)), self._conv5(self._conv5r(x)),
                    self._convprj(self._pool(x))]
        return F.relu(paddle.concat(branches, axis=1))


def _xavier(fan_in: int) -> ParamAttr:
    """PaddleClas's fc initialiser: U(-sqrt(3 / fan_in), sqrt(3 / fan_in))."""
    bound = (3.0 / fan_in) ** 0.5
    return ParamAttr(initializer=Uniform(-bound, bound))


@MODELS.register
class GoogLeNet(ArchModel):
    """GoogLeNet with its two auxiliary classifiers; returns ``[logits, aux1, aux2]``.

    Args:
        class_num: width of all three classifiers.
        data_format: only "NCHW".
    """
    input_size = 224

    def __init__(self, class_num: int = 1000, data_format: str = "NCHW"):
        super().__init__()
        class_num = check_class_num(class_num)
        if data_format != "NCHW":
            raise ConfigError("data_format", f"expected 'NCHW', got {data_format!r}",
                              "ppfreeze runs NCHW only; remove data_format")
        self._conv = ConvLayer(3, 64, 7, stride=2)
        self._pool = nn.MaxPool2D(kernel_size=3, stride=2)
        self._conv_1 = ConvLayer(64, 64, 1)
        self._conv_2 = ConvLayer(64, 192, 3)
        self._pool2 = nn.MaxPool2D(kernel_size=3, stride=2)
        for name, channels in INCEPTIONS.items():
            self.add_sublayer(f"_ince{name}", Inception(*channels))
            if name in ("3b", "4e"):
                pool = "_pool3" if name == "3b" else "_pool4"
                self.add_sublayer(pool, nn.MaxPool2D(kernel_size=3, stride=2))

        self._pool_5 = nn.AdaptiveAvgPool2D(1)
        self._drop = nn.Dropout(p=0.4, mode="downscale_in_infer")
        self.flatten = nn.Flatten()
        self._fc_out = nn.Linear(1024, class_num, weight_attr=_xavier(1024))
        # auxiliary heads: 5x5/3 average pool -> 1x1 conv to 128 -> fc 1024 -> dropout -> classifier
        self._pool_o1 = nn.AvgPool2D(kernel_size=5, stride=3)
        self._conv_o1 = ConvLayer(512, 128, 1)
        self._fc_o1 = nn.Linear(1152, 1024, weight_attr=_xavier(2048))
        self._drop_o1 = nn.Dropout(p=0.7, mode="downscale_in_infer")
        self._out1 = nn.Linear(1024, class_num, weight_attr=_xavier(1024))
        self._pool_o2 = nn.AvgPool2D(kernel_size=5, stride=3)
        self._conv_o2 = ConvLayer(528, 128, 1)
        self._fc_o2 = nn.Linear(1152, 1024, weight_attr=_xavier(2048))
        self._drop_o2 = nn.Dropout(p=0.7, mode="downscale_in_infer")
        self._out2 = nn.Linear(1024, class_num, weight_attr=_xavier(1024))

        self.class_num = class_num
        self.num_features = 1024
        self.stages = OrderedDict(
            stem=["_conv", "_pool", "_conv_1", "_conv_2", "_pool2"],
            stage1=["_ince3a", "_ince3b", "_pool3"],
            stage2=["_ince4a", "_ince4b", "_ince4c", "_ince4d", "_ince4e", "_pool4"],
            stage3=["_ince5a", "_ince5b"],
            head=["_pool_5", "_drop", "flatten", "_fc_out", "_pool_o1", "_conv_o1", "_fc_o1", "_drop_o1", "_out1",
                  "_pool_o2", "_conv_o2", "_fc_o2", "_drop_o2", "_out2"])

    def forward(self, x: paddle.Tensor) -> List[paddle.Tensor]:
        x = self._pool(self._conv(x))
        x = self._pool2(self._conv_2(self._conv_1(x)))
        x = self._pool3(self._ince3b(self._ince3a(x)))
        ince4a = self._ince4a(x)
        ince4d = self._ince4d(self._ince4c(self._ince4b(ince4a)))
        x = self._pool4(self._ince4e(ince4d))
        x = self._ince5b(self._ince5a(x))

        out = self._fc_out(self.flatten(self._drop(self._pool_5(x))))
        aux = self.flatten(self._conv_o1(self._pool_o1(ince4a)))
        out1 = self._out1(self._drop_o1(F.relu(self._fc_o1(aux))))
        aux = self.flatten(self._conv_o2(self._pool_o2(ince4d)))
        out2 = self._out2(self._drop_o2(self._fc_o2(aux)))  # no ReLU here in PaddleClas's second head
        return [out, out1, out2]
