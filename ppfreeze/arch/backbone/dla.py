"""DLA, Deep Layer Aggregation (Yu et al. 2017), PaddleClas's ``model_zoo/dla.py`` layout.

Parameter names follow the published ``DLA*_pretrained.pdparams``:

    base_layer.0 (7x7 conv) / .1 (BN)                           stem
    level0 / level1 .<3i> (3x3 conv) / .<3i+1> (BN)             plain conv levels
    level2..level5 : aggregation trees
        [.project.0 (1x1 conv) / .project.1 (BN)]               leaf shortcut when widths differ
        .tree1 / .tree2 (blocks: conv1/bn1/conv2/bn2[/conv3/bn3], or sub-trees)
        .root.conv / .root.bn                                   aggregation node (1x1 conv on the concatenation)
    fc.{weight,bias}                                            1x1 conv classifier

Forward: base_layer -> level0 -> level1 -> level2..level5 -> global pool -> [dropout] -> fc ->
flatten.  A tree at level 1 runs its two blocks and aggregates them (plus, at a level root,
the tree's downsampled input) in ``root``; deeper trees pass their children down to the last
leaf's root.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import List, Optional, Sequence, Type

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.nn.initializer import Normal

from ...config.errors import ConfigError
from ...config.expr import to_number
from ..base import ArchModel
from ..registry import MODELS
from .common import check_class_num


def conv2d(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
           dilation: int = 1, groups: int = 1, bias: bool = False) -> nn.Conv2D:
    """A conv with DLA's initialisation: N(0, sqrt(2 / (k * k * out_channels)))."""
    std = math.sqrt(2.0 / (kernel_size * kernel_size * out_channels))
    return nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                     groups=groups, weight_attr=ParamAttr(initializer=Normal(0.0, std)),
                     bias_attr=None if bias else False)


class DlaBasic(nn.Layer):
    """Two 3x3 convs + residual (the residual is given by the tree, or the input)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1,
                 cardinality: int = 1, base_width: int = 64):
        super().__init__()
        self.conv1 = conv2d(in_channels, out_channels, 3, stride, padding=dilation, dilation=dilation)
        self.bn1 = nn.BatchNorm2D(out_channels)
        self.relu = nn.ReLU()
        self.conv2 = conv2d(out_channels, out_channels, 3, 1, padding=dilation, dilation=dilation)
        self.bn2 = nn.BatchNorm2D(out_channels)

    def forward(self, x: paddle.Tensor, residual: Optional[paddle.Tensor] = None) -> paddle.Tensor:
        residual = x if residual is None else residual
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + residual)


class DlaBottleneck(nn.Layer):
    """1x1 -> grouped 3x3 -> 1x1 + residual; the inner width is ``out * base_width / 64 *
    cardinality / 2``."""
    expansion = 2

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1,
                 cardinality: int = 1, base_width: int = 64):
        super().__init__()
        mid = int(math.floor(out_channels * (base_width / 64)) * cardinality) // self.expansion
        self.conv1 = conv2d(in_channels, mid, 1)
        self.bn1 = nn.BatchNorm2D(mid)
        self.conv2 = conv2d(mid, mid, 3, stride, padding=dilation, dilation=dilation, groups=cardinality)
        self.bn2 = nn.BatchNorm2D(mid)
        self.conv3 = conv2d(mid, out_channels, 1)
        self.bn3 = nn.BatchNorm2D(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: paddle.Tensor, residual: Optional[paddle.Tensor] = None) -> paddle.Tensor:
        residual = x if residual is None else residual
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + residual)


class DlaRoot(nn.Layer):
    """Aggregation node: 1x1 conv over the concatenated children -> BN [+ first child] -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, residual: bool):
        super().__init__()
        self.conv = conv2d(in_channels, out_channels, 1)
        self.bn = nn.BatchNorm2D(out_channels)
        self.relu = nn.ReLU()
        self.residual = residual

    def forward(self, *children: paddle.Tensor) -> paddle.Tensor:
        x = self.bn(self.conv(paddle.concat(children, axis=1)))
        if self.residual:
            x = x + children[0]
        return self.relu(x)


class DlaTree(nn.Layer):
    """A hierarchical aggregation tree of ``levels`` levels of ``block``s."""

    def __init__(self, levels: int, block: Type[nn.Layer], in_channels: int, out_channels: int, stride: int = 1,
                 cardinality: int = 1, base_width: int = 64, level_root: bool = False, root_dim: int = 0,
                 root_residual: bool = False):
        super().__init__()
        root_dim = (root_dim or 2 * out_channels) + (in_channels if level_root else 0)
        self.downsample = nn.MaxPool2D(stride, stride=stride) if stride > 1 else nn.Identity()
        leaf = levels == 1
        # only a leaf projects its (downsampled) input to feed the first block's residual
        self.project = nn.Sequential(conv2d(in_channels, out_channels, 1), nn.BatchNorm2D(out_channels)) \
            if leaf and in_channels != out_channels else nn.Identity()
        blocks = dict(cardinality=cardinality, base_width=base_width)
        if leaf:
            self.tree1 = block(in_channels, out_channels, stride, **blocks)
            self.tree2 = block(out_channels, out_channels, 1, **blocks)
            self.root = DlaRoot(root_dim, out_channels, root_residual)
        else:
            sub = dict(blocks, root_residual=root_residual)
            self.tree1 = DlaTree(levels - 1, block, in_channels, out_channels, stride, **sub)
            self.tree2 = DlaTree(levels - 1, block, out_channels, out_channels, root_dim=root_dim + out_channels,
                                 **sub)
        self.level_root = level_root
        self.leaf = leaf

    def forward(self, x: paddle.Tensor, residual: Optional[paddle.Tensor] = None,
                children: Optional[List[paddle.Tensor]] = None) -> paddle.Tensor:
        children = [] if children is None else children
        bottom = self.downsample(x)
        if self.level_root:
            children.append(bottom)
        x1 = self.tree1(x, self.project(bottom))  # a sub-tree ignores the residual it is given
        if self.leaf:
            return self.root(self.tree2(x1), x1, *children)
        children.append(x1)
        return self.tree2(x1, children=children)


def conv_level(in_channels: int, out_channels: int, convs: int, stride: int = 1) -> nn.Sequential:
    """``convs`` x (3x3 conv -> BN -> ReLU), the first one strided."""
    layers: List[nn.Layer] = []
    for i in range(convs):
        layers += [conv2d(in_channels, out_channels, 3, stride if i == 0 else 1, padding=1),
                   nn.BatchNorm2D(out_channels), nn.ReLU()]
        in_channels = out_channels
    return nn.Sequential(*layers)


class DLA(ArchModel):
    """DLA; subclasses fix the levels, widths, block type and grouping.

    Args:
        class_num: classifier width (the 1x1 conv ``fc``).
        in_chans: channels of the input image.
        drop_rate: dropout before the classifier (0 = none).
        with_pool: only True (PaddleClas's False flattens an unpooled class map).

    Stages: stem (``base_layer``, ``level0``, ``level1``: stride 2), stage1..stage4
    (``level2``..``level5``: strides 4..32), head (pool, fc).
    """
    levels: Sequence[int] = (1, 1, 1, 2, 2, 1)
    channels: Sequence[int] = (16, 32, 64, 128, 256, 512)
    block: Type[nn.Layer] = DlaBasic
    cardinality: int = 1
    base_width: int = 64
    residual_root: bool = False

    def __init__(self, class_num: int = 1000, in_chans: int = 3, drop_rate: float = 0.0, with_pool: bool = True):
        super().__init__()
        class_num = check_class_num(class_num)
        self.drop_rate = float(to_number(drop_rate, "drop_rate"))
        if not 0 <= self.drop_rate < 1:
            raise ConfigError("drop_rate", f"expected a probability in [0, 1), got {drop_rate!r}")
        if with_pool is not True:
            raise ConfigError("with_pool", f"only true is supported, got {with_pool!r}",
                              "to get features, cut the model with RecModel's BackboneStopLayer instead")
        ch, lv = self.channels, self.levels
        self.base_layer = nn.Sequential(conv2d(in_chans, ch[0], 7, padding=3), nn.BatchNorm2D(ch[0]), nn.ReLU())
        self.level0 = conv_level(ch[0], ch[0], lv[0])
        self.level1 = conv_level(ch[0], ch[1], lv[1], stride=2)
        tree = dict(cardinality=self.cardinality, base_width=self.base_width, root_residual=self.residual_root)
        for n in range(2, 6):
            self.add_sublayer(f"level{n}", DlaTree(lv[n], self.block, ch[n - 1], ch[n], 2, level_root=n > 2, **tree))
        self.global_pool = nn.AdaptiveAvgPool2D(1)
        self.fc = conv2d(ch[-1], class_num, 1, bias=True)

        self.class_num = class_num
        self.num_features = ch[-1]
        self.stages = OrderedDict(stem=["base_layer", "level0", "level1"], stage1=["level2"], stage2=["level3"],
                                  stage3=["level4"], stage4=["level5"], head=["global_pool", "fc"])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.level1(self.level0(self.base_layer(x)))
        for n in range(2, 6):
            x = self._sub_layers[f"level{n}"](x)
        x = self.global_pool(x)
        if self.drop_rate > 0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return self.fc(x).flatten(1)


@MODELS.register
class DLA34(DLA):
    levels, channels, block = (1, 1, 1, 2, 2, 1), (16, 32, 64, 128, 256, 512), DlaBasic


@MODELS.register
class DLA46_c(DLA):
    levels, channels, block = (1, 1, 1, 2, 2, 1), (16, 32, 64, 64, 128, 256), DlaBottleneck


@MODELS.register
class DLA46x_c(DLA):
    levels, channels, block = (1, 1, 1, 2, 2, 1), (16, 32, 64, 64, 128, 256), DlaBottleneck
    cardinality, base_width = 32, 4


@MODELS.register
class DLA60(DLA):
    levels, channels, block = (1, 1, 1, 2, 3, 1), (16, 32, 128, 256, 512, 1024), DlaBottleneck


@MODELS.register
class DLA60x(DLA):
    levels, channels, block = (1, 1, 1, 2, 3, 1), (16, 32, 128, 256, 512, 1024), DlaBottleneck
    cardinality, base_width = 32, 4


@MODELS.register
class DLA60x_c(DLA):
    levels, channels, block = (1, 1, 1, 2, 3, 1), (16, 32, 64, 64, 128, 256), DlaBottleneck
    cardinality, base_width = 32, 4


@MODELS.register
class DLA102(DLA):
    levels, channels, block = (1, 1, 1, 3, 4, 1), (16, 32, 128, 256, 512, 1024), DlaBottleneck
    residual_root = True


@MODELS.register
class DLA102x(DLA):
    levels, channels, block = (1, 1, 1, 3, 4, 1), (16, 32, 128, 256, 512, 1024), DlaBottleneck
    cardinality, base_width, residual_root = 32, 4, True


@MODELS.register
class DLA102x2(DLA):
    levels, channels, block = (1, 1, 1, 3, 4, 1), (16, 32, 128, 256, 512, 1024), DlaBottleneck
    cardinality, base_width, residual_root = 64, 4, True


@MODELS.register
class DLA169(DLA):
    levels, channels, block = (1, 1, 2, 3, 5, 1), (16, 32, 128, 256, 512, 1024), DlaBottleneck
    residual_root = True
