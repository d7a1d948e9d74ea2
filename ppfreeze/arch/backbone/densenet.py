"""DenseNet 121/161/169/201/264 (Huang et al. 2016), PaddleClas's ``model_zoo/densenet.py`` layout.

Parameter names follow the published ``DenseNet*_pretrained.pdparams``:

    conv1_func._conv.weight, conv1_func._batch_norm.*                      stem (7x7 conv, BN, ReLU)
    db_conv_<b>.conv<b>_<i>.bn_ac_func1|bn_ac_func2._batch_norm.* / ._conv.weight
                                                                           dense layers (BN-ReLU-conv)
    tr_conv<b>_blk.conv_ac_func._batch_norm.* / ._conv.weight              transitions
    batch_norm.*, out.{weight,bias}                                        final BN-ReLU, classifier

Forward: conv1_func -> pool2d_max -> (db_conv_b -> tr_conv<b>_blk) x3 -> db_conv_5 ->
batch_norm + ReLU -> pool2d_avg -> flatten -> out.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import List

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...config.errors import ConfigError
from ...config.expr import to_number
from ..base import ArchModel
from ..registry import MODELS
from .common import check_class_num
from .resnet_classic import BNReLUConv, ConvBN, uniform_linear

# depth -> (stem channels, growth rate, dense layers per block)
SPECS = {
    121: (64, 32, (6, 12, 24, 16)),
    161: (96, 48, (6, 12, 36, 24)),
    169: (64, 32, (6, 12, 32, 32)),
    201: (64, 32, (6, 12, 48, 32)),
    264: (64, 32, (6, 12, 64, 48)),
}


class DenseLayer(nn.Layer):
    """Bottleneck 1x1 (``bn_size * growth`` channels) -> 3x3 (``growth``) -> [dropout];
    the output is the input with the new channels concatenated."""

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int, dropout: float):
        super().__init__()
        self.bn_ac_func1 = BNReLUConv(in_channels, bn_size * growth_rate, 1)
        self.bn_ac_func2 = BNReLUConv(bn_size * growth_rate, growth_rate, 3)
        self.dropout_func = nn.Dropout(p=dropout, mode="downscale_in_infer") if dropout else None

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        new = self.bn_ac_func2(self.bn_ac_func1(x))
        if self.dropout_func is not None:
            new = self.dropout_func(new)
        return paddle.concat([x, new], axis=1)


class DenseBlock(nn.Sequential):
    """``num_layers`` dense layers named ``conv<block>_<i>`` (i from 1)."""

    def __init__(self, block: int, in_channels: int, num_layers: int, growth_rate: int, bn_size: int,
                 dropout: float):
        super().__init__(*[(f"conv{block}_{i + 1}",
                            DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size, dropout))
                           for i in range(num_layers)])


class Transition(nn.Layer):
    """BN -> ReLU -> 1x1 conv (halves the channels) -> 2x2 average pool."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv_ac_func = BNReLUConv(in_channels, out_channels, 1)
        self.pool2d_avg = nn.AvgPool2D(kernel_size=2, stride=2, padding=0)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.pool2d_avg(self.conv_ac_func(x))


class DenseNet(ArchModel):
    """DenseNet; subclasses fix ``depth``.

    Args:
        class_num: classifier width.
        bn_size: bottleneck width of each dense layer, in multiples of the growth rate.
        dropout: dropout after each dense layer (``downscale_in_infer``, as in PaddleClas); 0 = none.
    """
    depth: int = 121

    def __init__(self, class_num: int = 1000, bn_size: int = 4, dropout: float = 0):
        super().__init__()
        class_num = check_class_num(class_num)
        if isinstance(bn_size, bool) or not isinstance(bn_size, int) or bn_size < 1:
            raise ConfigError("bn_size", f"expected a positive integer, got {bn_size!r}")
        dropout = to_number(dropout, "dropout")
        if not 0 <= dropout < 1:
            raise ConfigError("dropout", f"expected a probability in [0, 1), got {dropout!r}")
        stem_channels, growth, layers_per_block = SPECS[self.depth]

        self.conv1_func = ConvBN(3, stem_channels, 7, stride=2, act="relu")
        self.pool2d_max = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)
        self.stages = OrderedDict(stem=["conv1_func", "pool2d_max"])
        channels = stem_channels
        last = len(layers_per_block) - 1
        for i, num_layers in enumerate(layers_per_block):
            block = i + 2  # PaddleClas numbers the dense blocks 2..5 (after the conv1 stem)
            self.add_sublayer(f"db_conv_{block}", DenseBlock(block, channels, num_layers, growth, bn_size, dropout))
            channels += num_layers * growth
            units = [f"db_conv_{block}"]
            if i != last:
                self.add_sublayer(f"tr_conv{block}_blk", Transition(channels, channels // 2))
                channels //= 2
                units.append(f"tr_conv{block}_blk")
            self.stages[f"stage{i + 1}"] = units
        # the trunk's closing BN-ReLU belongs to the last stage: the head reads its output
        self.batch_norm = nn.BatchNorm2D(channels)
        self.stages[f"stage{last + 1}"].append("batch_norm")
        self.pool2d_avg = nn.AdaptiveAvgPool2D(1)
        self.flatten = nn.Flatten(start_axis=1, stop_axis=-1)
        self.out = uniform_linear(channels, class_num)
        self.stages["head"] = ["pool2d_avg", "flatten", "out"]

        self.class_num = class_num
        self.num_features = channels
        # dense blocks and transitions, in forward order
        self._body: List[str] = [u for n in range(1, last + 2) for u in self.stages[f"stage{n}"] if u != "batch_norm"]

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.pool2d_max(self.conv1_func(x))
        for name in self._body:
            x = self._sub_layers[name](x)
        x = F.relu(self.batch_norm(x))
        x = self.flatten(self.pool2d_avg(x))
        return self.out(x)


@MODELS.register
class DenseNet121(DenseNet):
    depth = 121


@MODELS.register
class DenseNet161(DenseNet):
    depth = 161


@MODELS.register
class DenseNet169(DenseNet):
    depth = 169


@MODELS.register
class DenseNet201(DenseNet):
    depth = 201


@MODELS.register
class DenseNet264(DenseNet):
    depth = 264
