"""Wide ResNet (Zagoruyko & Komodakis 2016) as used by FixMatch / CCSSL, PaddleClas's
``model_zoo/wideresnet.py`` layout (CIFAR-sized: a 3x3 stem, no max pool):

    conv1.weight                                                      3x3 stem, 16 channels
    block<s>.layer.<i>.bn1 / conv1 / bn2 / conv2 / [convShortcut]     pre-activation blocks, s = 1..3
    bn1.*  (then LeakyReLU, global average pool)
    fc.weight, fc.bias;  with proj: fc1, fc2 (projection head, L2-normalised output)

BNs use momentum 0.999 and activations are LeakyReLU(0.1), as in PaddleClas.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Tuple, Union

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...config.errors import ConfigError
from ...config.expr import to_number
from ..base import ArchModel
from ..registry import MODELS
from .common import check_class_num

BN_MOMENTUM = 0.999
LEAKY_SLOPE = 0.1


class BasicBlock(nn.Layer):
    """Pre-activation block: BN-LReLU-conv3x3-BN-LReLU-[dropout]-conv3x3, plus the (1x1-projected) input.

    ``activate_before_residual``: the first block of the net feeds the activated input to the
    shortcut as well (it has no earlier activation).
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int, drop_rate: float = 0.0,
                 activate_before_residual: bool = False):
        super().__init__()
        self.bn1 = nn.BatchNorm2D(in_planes, momentum=BN_MOMENTUM)
        self.relu1 = nn.LeakyReLU(negative_slope=LEAKY_SLOPE)
        self.conv1 = nn.Conv2D(in_planes, out_planes, 3, stride=stride, padding=1, bias_attr=False)
        self.bn2 = nn.BatchNorm2D(out_planes, momentum=BN_MOMENTUM)
        self.relu2 = nn.LeakyReLU(negative_slope=LEAKY_SLOPE)
        self.conv2 = nn.Conv2D(out_planes, out_planes, 3, stride=1, padding=1, bias_attr=False)
        self.equal_in_out = in_planes == out_planes
        self.convShortcut = None if self.equal_in_out else nn.Conv2D(in_planes, out_planes, 1, stride=stride,
                                                                     bias_attr=False)
        self.drop_rate = drop_rate
        self.activate_before_residual = activate_before_residual
        if not self.equal_in_out and not activate_before_residual:
            # This block's first conv reads the raw input (as in PaddleClas and FixMatch), so bn1's
            # output never reaches the result: its weight and bias get no gradient. Keep them out
            # of the optimizer explicitly; bn1 still runs, so its running statistics move as there.
            self.bn1.weight.stop_gradient = True
            self.bn1.bias.stop_gradient = True

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        activated = self.relu1(self.bn1(x))
        if not self.equal_in_out and self.activate_before_residual:
            x = activated
        out = self.relu2(self.bn2(self.conv1(activated if self.equal_in_out else x)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        return (x if self.equal_in_out else self.convShortcut(x)) + out


class NetworkBlock(nn.Layer):
    """One stage: ``layer`` = Sequential of ``num_layers`` BasicBlocks, the first strided."""

    def __init__(self, num_layers: int, in_planes: int, out_planes: int, stride: int, drop_rate: float,
                 activate_before_residual: bool = False):
        super().__init__()
        self.layer = nn.Sequential(*[
            BasicBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, drop_rate,
                       activate_before_residual) for i in range(num_layers)])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.layer(x)


class Normalize(nn.Layer):
    """Lp normalisation over the feature axis (the projection head's output)."""

    def __init__(self, power: int = 2):
        super().__init__()
        self.power = power

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x / x.pow(self.power).sum(1, keepdim=True).pow(1.0 / self.power)


@MODELS.register
class WideResNet(ArchModel):
    """WRN-``depth``-``widen_factor`` with PaddleClas's arguments.

    Args:
        depth: 6n + 4 (28 in PaddleClas's configs).
        widen_factor: width multiplier of the three stages (16, 32, 64 channels at 1).
        dropout: dropout rate inside the blocks.
        num_classes: classifier width (PaddleClas's name for it); ``class_num`` is accepted as
            well (``Global.class_num`` arrives that way); if both are given they must agree.
        proj: add the projection head ``fc1 -> LeakyReLU -> fc2 -> L2 norm``; forward then returns
            ``(logits, projected features)``.
        proj_after: classify the projected features (``fc`` reads ``low_dim`` inputs).
        low_dim: width of the projection.
    """

    def __init__(self, depth: int = 28, widen_factor: int = 2, dropout: float = 0.0,
                 num_classes: Optional[int] = None, proj: bool = False, low_dim: int = 64,
                 proj_after: bool = False, class_num: Optional[int] = None):
        super().__init__()
        class_num = _class_num(num_classes, class_num)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
            raise ConfigError("depth", f"expected 6n + 4 (e.g. 28), got {depth!r}")
        if isinstance(widen_factor, bool) or not isinstance(widen_factor, int) or widen_factor < 1:
            raise ConfigError("widen_factor", f"expected a positive integer, got {widen_factor!r}")
        drop_rate = float(to_number(dropout, "dropout"))
        channels = (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        n = (depth - 4) // 6

        self.conv1 = nn.Conv2D(3, channels[0], 3, stride=1, padding=1, bias_attr=False)
        self.block1 = NetworkBlock(n, channels[0], channels[1], 1, drop_rate, activate_before_residual=True)
        self.block2 = NetworkBlock(n, channels[1], channels[2], 2, drop_rate)
        self.block3 = NetworkBlock(n, channels[2], channels[3], 2, drop_rate)
        self.bn1 = nn.BatchNorm2D(channels[3], momentum=BN_MOMENTUM)
        self.relu = nn.LeakyReLU(negative_slope=LEAKY_SLOPE)
        self.fc = nn.Linear(low_dim if proj_after else channels[3], class_num)
        self.proj, self.proj_after = bool(proj), bool(proj_after)
        if self.proj:
            self.l2norm = Normalize(2)
            self.fc1 = nn.Linear(channels[3], channels[3])
            self.relu_mlp = nn.LeakyReLU(negative_slope=LEAKY_SLOPE)
            self.fc2 = nn.Linear(channels[3], low_dim)

        self.class_num = class_num
        self.num_features = channels[3]
        head = ["bn1", "relu", "fc"] + (["l2norm", "fc1", "relu_mlp", "fc2"] if self.proj else [])
        self.stages = OrderedDict(stem=["conv1"], stage1=["block1"], stage2=["block2"], stage3=["block3"], head=head)

    def forward(self, x: paddle.Tensor) -> Union[paddle.Tensor, Tuple[paddle.Tensor, paddle.Tensor]]:
        feat = self.block3(self.block2(self.block1(self.conv1(x))))
        feat = self.relu(self.bn1(feat))
        feat = paddle.reshape(F.adaptive_avg_pool2d(feat, 1), [-1, self.num_features])
        if not self.proj:
            return self.fc(feat)
        projected = self.l2norm(self.fc2(self.relu_mlp(self.fc1(feat))))
        return self.fc(projected if self.proj_after else feat), projected


def _class_num(num_classes, class_num) -> int:
    """PaddleClas's ``num_classes``, or ``class_num``; both given must agree."""
    if num_classes is None and class_num is None:
        raise ConfigError("num_classes", "WideResNet needs the number of classes",
                          "set Arch.num_classes (PaddleClas's name) or Global.class_num")
    if num_classes is not None and class_num is not None and num_classes != class_num:
        raise ConfigError("num_classes", f"num_classes {num_classes!r} disagrees with class_num {class_num!r}",
                          "give one of them")
    return check_class_num(num_classes if num_classes is not None else class_num,
                           "num_classes" if num_classes is not None else "class_num")
