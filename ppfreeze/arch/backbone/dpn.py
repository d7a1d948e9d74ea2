"""DPN, Dual Path Networks (Chen et al. 2017), PaddleClas's ``model_zoo/dpn.py`` layout.

Parameter names follow the published ``DPN*_pretrained.pdparams``:

    conv1_x_1_func._conv.weight / ._batch_norm.*                           stem (conv -> BN -> ReLU)
    dpn<i>.[c1x1_w_func].c1x1_a_func.c3x3_b_func.c1x1_c_func ._batch_norm.* / ._conv.weight
                                                                           dual path blocks, i = 1..N
    conv5_x_x_bn.*, out.{weight,bias}                                      final BN-ReLU, classifier

Every block conv is pre-activated (BN -> ReLU -> conv).  A block keeps two paths: a residual
path of ``bw`` channels (summed) and a densely connected path growing by ``inc`` channels per
block (concatenated); the first block of each stage projects its input onto both (strided
from the second stage on).  Forward: stem -> 3x3/2 max pool -> blocks -> concatenate both
paths -> BN + ReLU -> pool -> flatten -> out.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, NamedTuple, Sequence, Tuple, Union

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.nn.initializer import Uniform

from ..base import ArchModel
from ..registry import MODELS
from .common import check_class_num
from .resnet_classic import BNReLUConv, ConvBN

Paths = List[paddle.Tensor]  # [residual path, dense path]


class Spec(NamedTuple):
    k_r: int  # bottleneck width factor
    groups: int  # groups of the 3x3 conv
    blocks: Tuple[int, ...]  # blocks per stage
    inc: Tuple[int, ...]  # dense-path growth per block, per stage
    bw: Tuple[int, ...]  # residual-path width per stage
    r: Tuple[int, ...]  # bottleneck width divisor per stage
    stem_channels: int
    stem_kernel: int


SPECS: Dict[int, Spec] = {
    68: Spec(128, 32, (3, 4, 12, 3), (16, 32, 32, 64), (64, 128, 256, 512), (64, 64, 64, 64), 10, 3),
    92: Spec(96, 32, (3, 4, 20, 3), (16, 32, 24, 128), (256, 512, 1024, 2048), (256,) * 4, 64, 7),
    98: Spec(160, 40, (3, 6, 20, 3), (16, 32, 32, 128), (256, 512, 1024, 2048), (256,) * 4, 96, 7),
    107: Spec(200, 50, (4, 8, 20, 3), (20, 64, 64, 128), (256, 512, 1024, 2048), (256,) * 4, 128, 7),
    131: Spec(160, 40, (4, 8, 28, 3), (16, 32, 32, 128), (256, 512, 1024, 2048), (256,) * 4, 128, 7),
}


class DualPathBlock(nn.Layer):
    """1x1 -> grouped 3x3 -> 1x1 to ``bw + inc`` channels: the first ``bw`` are added to the
    residual path, the last ``inc`` appended to the dense path.  With ``projection`` (a stage's
    first block) a 1x1 conv (strided when ``stride`` is 2) makes both paths from the input."""

    def __init__(self, in_channels: int, mid: int, bw: int, inc: int, groups: int, projection: bool, stride: int):
        super().__init__()
        self.bw, self.inc = bw, inc
        if projection:
            self.c1x1_w_func = BNReLUConv(in_channels, bw + 2 * inc, 1, stride=stride)
        else:
            self.c1x1_w_func = None
        self.c1x1_a_func = BNReLUConv(in_channels, mid, 1)
        self.c3x3_b_func = BNReLUConv(mid, mid, 3, stride=stride, groups=groups)
        self.c1x1_c_func = BNReLUConv(mid, bw + inc, 1)

    def forward(self, x: Union[paddle.Tensor, Paths]) -> Paths:
        data = paddle.concat(x, axis=1) if isinstance(x, (list, tuple)) else x
        if self.c1x1_w_func is not None:
            residual, dense = paddle.split(self.c1x1_w_func(data), [self.bw, 2 * self.inc], axis=1)
        else:
            residual, dense = x
        new_residual, new_dense = paddle.split(self.c1x1_c_func(self.c3x3_b_func(self.c1x1_a_func(data))),
                                               [self.bw, self.inc], axis=1)
        return [residual + new_residual, paddle.concat([dense, new_dense], axis=1)]


class DPN(ArchModel):
    """DPN; subclasses fix ``depth``.

    Args:
        class_num: classifier width.

    Stages: stem (conv, max pool), stage1..stage4 (the dual path blocks of each resolution; the
    last stage also holds the final BN-ReLU over both paths), head (pool, flatten, fc).
    """
    depth: int = 68

    def __init__(self, class_num: int = 1000):
        super().__init__()
        class_num = check_class_num(class_num)
        spec = SPECS[self.depth]
        self.conv1_x_1_func = ConvBN(3, spec.stem_channels, spec.stem_kernel, stride=2, act="relu")
        self.pool2d_max = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)
        self.stages = OrderedDict(stem=["conv1_x_1_func", "pool2d_max"])
        channels: Union[int, Sequence[int]] = spec.stem_channels
        index = 0
        for stage, (num_blocks, inc, bw, r) in enumerate(zip(spec.blocks, spec.inc, spec.bw, spec.r)):
            mid = spec.k_r * bw // r
            units = []
            for i in range(num_blocks):
                index += 1
                in_channels = channels if isinstance(channels, int) else sum(channels)
                self.add_sublayer(f"dpn{index}", DualPathBlock(in_channels, mid, bw, inc, spec.groups,
                                                               projection=i == 0, stride=2 if i == 0 and stage else 1))
                units.append(f"dpn{index}")
                channels = [bw, 3 * inc] if i == 0 else [bw, channels[1] + inc]
            self.stages[f"stage{stage + 1}"] = units
        num_features = sum(channels)
        self.conv5_x_x_bn = nn.BatchNorm2D(num_features)
        self.stages["stage4"].append("conv5_x_x_bn")
        self.pool2d_avg = nn.AdaptiveAvgPool2D(1)
        self.flatten = nn.Flatten(start_axis=1, stop_axis=-1)
        self.out = nn.Linear(num_features, class_num, weight_attr=ParamAttr(initializer=Uniform(-0.01, 0.01)))
        self.stages["head"] = ["pool2d_avg", "flatten", "out"]

        self.class_num = class_num
        self.num_features = num_features
        self._blocks = [f"dpn{i}" for i in range(1, index + 1)]

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        paths = self.pool2d_max(self.conv1_x_1_func(x))
        for name in self._blocks:
            paths = self._sub_layers[name](paths)
        x = F.relu(self.conv5_x_x_bn(paddle.concat(paths, axis=1)))
        return self.out(self.flatten(self.pool2d_avg(x)))


@MODELS.register
class DPN68(DPN):
    depth = 68


@MODELS.register
class DPN92(DPN):
    depth = 92


@MODELS.register
class DPN98(DPN):
    depth = 98


@MODELS.register
class DPN107(DPN):
    depth = 107


@MODELS.register
class DPN131(DPN):
    depth = 131
