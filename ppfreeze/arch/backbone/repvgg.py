"""RepVGG (Ding et al. 2021): a VGG-style net trained with 3x3 + 1x1 + identity branches that fold
into a single 3x3 conv per block for deployment.

Parameter names follow PaddleClas's ``model_zoo/repvgg.py``, so the published
``RepVGG_*_pretrained.pdparams`` load as-is:

    stage0 / stage<s>.<i> . [se.down|up] . rbr_identity (BN) . rbr_dense.conv|bn . rbr_1x1.conv|bn
    linear.weight, linear.bias

``export_model()`` returns the deploy form: each block becomes ``rbr_reparam`` (one 3x3 conv with
bias) [+ SE] + ReLU, with the same eval-mode outputs. Training keeps the branches.

Forward: stage0 -> stage1..4 -> gap -> flatten -> linear.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...config.errors import ConfigError
from ...config.expr import to_number
from ..base import ArchModel
from ..registry import MODELS
from .common import check_bool, check_class_num, fold_batch_norm, int_list

STAGE_WIDTHS = (64, 128, 256, 512)
# blocks (counted from 1 after stage0) that the g2/g4 variants make grouped convs
GROUPWISE_LAYERS = tuple(range(2, 27, 2))


class ConvBN(nn.Layer):
    """Conv (no bias) -> BN."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int,
                 groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                              groups=groups, bias_attr=False)
        self.bn = nn.BatchNorm2D(out_channels)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.bn(self.conv(x))


class SEBlock(nn.Layer):
    """Squeeze-excitation on the summed branches (RepVGG_D2se), 1x1 convs down/up.

    PaddleClas pools with a kernel as wide as the input; that is a global average for the square
    inputs it supports, so a global average is used here (any input shape works)."""

    def __init__(self, channels: int, internal_neurons: int):
        super().__init__()
        self.down = nn.Conv2D(channels, internal_neurons, 1)
        self.up = nn.Conv2D(internal_neurons, channels, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        gate = F.adaptive_avg_pool2d(x, 1)
        return x * F.sigmoid(self.up(F.relu(self.down(gate))))


class RepVGGBlock(nn.Layer):
    """Training form: ReLU(SE(3x3 conv-BN + 1x1 conv-BN + BN(x))); the identity branch exists only
    when the block keeps shape (stride 1, same width)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, groups: int = 1, use_se: bool = False):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.stride, self.groups = stride, groups
        self.nonlinearity = nn.ReLU()
        self.se = SEBlock(out_channels, out_channels // 16) if use_se else nn.Identity()
        self.rbr_identity = nn.BatchNorm2D(in_channels) if in_channels == out_channels and stride == 1 else None
        self.rbr_dense = ConvBN(in_channels, out_channels, 3, stride, padding=1, groups=groups)
        self.rbr_1x1 = ConvBN(in_channels, out_channels, 1, stride, padding=0, groups=groups)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            y = y + self.rbr_identity(x)
        return self.nonlinearity(self.se(y))

    def fused(self) -> "RepVGGDeployBlock":
        """The deploy form: the three branches folded into one 3x3 conv with bias (eval-mode BN)."""
        kernel, bias = fold_batch_norm(self.rbr_dense.conv.weight, self.rbr_dense.bn)
        k1, b1 = fold_batch_norm(self.rbr_1x1.conv.weight, self.rbr_1x1.bn)
        kernel, bias = kernel + F.pad(k1, [1, 1, 1, 1]), bias + b1
        if self.rbr_identity is not None:
            kid, bid = fold_batch_norm(self._identity_kernel(), self.rbr_identity)
            kernel, bias = kernel + kid, bias + bid
        deploy = RepVGGDeployBlock(self.in_channels, self.out_channels, self.stride, self.groups, self.se)
        deploy.rbr_reparam.weight.set_value(kernel)
        deploy.rbr_reparam.bias.set_value(bias)
        return deploy

    def _identity_kernel(self) -> paddle.Tensor:
        """The 3x3 (grouped) kernel of the identity map: 1 at the centre, input channel i -> i."""
        per_group = self.in_channels // self.groups
        kernel = np.zeros((self.in_channels, per_group, 3, 3), dtype="float32")
        kernel[np.arange(self.in_channels), np.arange(self.in_channels) % per_group, 1, 1] = 1.0
        return paddle.to_tensor(kernel)


class RepVGGDeployBlock(nn.Layer):
    """Deploy form of a :class:`RepVGGBlock`: ReLU(SE(conv3x3(x) + bias))."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, groups: int, se: nn.Layer):
        super().__init__()
        self.nonlinearity = nn.ReLU()
        self.se = se
        self.rbr_reparam = nn.Conv2D(in_channels, out_channels, 3, stride=stride, padding=1, groups=groups)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.nonlinearity(self.se(self.rbr_reparam(x)))


class RepVGG(ArchModel):
    """RepVGG; subclasses fix the defaults of ``num_blocks``, ``width_multiplier``,
    ``override_groups_map`` and ``use_se``.

    Args:
        class_num: classifier width.
        num_blocks: blocks in stage1..stage4 (4 integers).
        width_multiplier: 4 width multipliers of stage1..stage4 (stage0 is min(64, 64 * a)).
        override_groups_map: ``{block index: groups}``; block indices count from 1 after stage0.
        use_se: squeeze-excitation in every block.
    """
    default_blocks: Sequence[int] = (2, 4, 14, 1)
    default_widths: Sequence[float] = (0.75, 0.75, 0.75, 2.5)
    default_groups: int = 1  # g2 / g4: groups of the GROUPWISE_LAYERS blocks
    default_use_se: bool = False

    def __init__(self, class_num: int = 1000, num_blocks: Optional[Sequence[int]] = None,
                 width_multiplier: Optional[Sequence[float]] = None,
                 override_groups_map: Optional[Dict[int, int]] = None, use_se: Optional[bool] = None):
        super().__init__()
        class_num = check_class_num(class_num)
        blocks = int_list(list(self.default_blocks) if num_blocks is None else num_blocks, 4, "num_blocks")
        widths = _multipliers(self.default_widths if width_multiplier is None else width_multiplier)
        groups = _groups_map(override_groups_map) if override_groups_map is not None else \
            {i: self.default_groups for i in GROUPWISE_LAYERS if self.default_groups > 1}
        use_se = check_bool(self.default_use_se if use_se is None else use_se, "use_se")

        in_planes = min(64, int(64 * widths[0]))
        self.stage0 = RepVGGBlock(3, in_planes, stride=2, use_se=use_se)
        index = 1
        for n, (num, width, mult) in enumerate(zip(blocks, STAGE_WIDTHS, widths), 1):
            planes = int(width * mult)
            layers = []
            for i in range(num):
                layers.append(RepVGGBlock(in_planes, planes, stride=2 if i == 0 else 1,
                                          groups=_groups_for(groups, index, in_planes, planes), use_se=use_se))
                in_planes, index = planes, index + 1
            setattr(self, f"stage{n}", nn.Sequential(*layers))
        self.gap = nn.AdaptiveAvgPool2D(output_size=1)
        self.flatten = nn.Flatten()  # PaddleClas calls paddle.flatten; a sublayer lets BackboneStopLayer cut here
        self.linear = nn.Linear(in_planes, class_num)

        self.class_num = class_num
        self.num_features = in_planes
        self.stages = OrderedDict([("stem", ["stage0"])] + [(f"stage{n}", [f"stage{n}"]) for n in range(1, 5)]
                                  + [("head", ["gap", "flatten", "linear"])])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.stage0(x)
        x = self.stage1(x)
        x = self.stage2(x)
        x = self.stage3(x)
        x = self.stage4(x)
        x = self.flatten(self.gap(x))
        return self.linear(x)


def _multipliers(values: Any, key: str = "width_multiplier") -> List[float]:
    if not isinstance(values, (list, tuple)) or len(values) != 4:
        raise ConfigError(key, f"expected 4 width multipliers (stage1..stage4), got {values!r}")
    numbers = [float(to_number(v, f"{key}[{i}]")) for i, v in enumerate(values)]
    if any(v <= 0 for v in numbers):
        raise ConfigError(key, f"expected positive multipliers, got {values!r}")
    return numbers


def _groups_map(values: Any, key: str = "override_groups_map") -> Dict[int, int]:
    if not isinstance(values, dict):
        raise ConfigError(key, f"expected a mapping {{block index: groups}}, got {values!r}", "e.g. {2: 4, 4: 4}")
    for index, groups in values.items():
        int_list([index, groups], 2, f"{key}.{index}")
    return dict(values)


def _groups_for(groups: Dict[int, int], index: int, in_channels: int, out_channels: int) -> int:
    value = groups.get(index, 1)
    if in_channels % value or out_channels % value:
        raise ConfigError(f"override_groups_map.{index}", f"{value} groups do not divide the block's "
                                                          f"{in_channels} -> {out_channels} channels")
    return value


@MODELS.register
class RepVGG_A0(RepVGG):
    default_blocks, default_widths = (2, 4, 14, 1), (0.75, 0.75, 0.75, 2.5)


@MODELS.register
class RepVGG_A1(RepVGG):
    default_blocks, default_widths = (2, 4, 14, 1), (1, 1, 1, 2.5)


@MODELS.register
class RepVGG_A2(RepVGG):
    default_blocks, default_widths = (2, 4, 14, 1), (1.5, 1.5, 1.5, 2.75)


@MODELS.register
class RepVGG_B0(RepVGG):
    default_blocks, default_widths = (4, 6, 16, 1), (1, 1, 1, 2.5)


@MODELS.register
class RepVGG_B1(RepVGG):
    default_blocks, default_widths = (4, 6, 16, 1), (2, 2, 2, 4)


@MODELS.register
class RepVGG_B1g2(RepVGG):
    default_blocks, default_widths, default_groups = (4, 6, 16, 1), (2, 2, 2, 4), 2


@MODELS.register
class RepVGG_B1g4(RepVGG):
    default_blocks, default_widths, default_groups = (4, 6, 16, 1), (2, 2, 2, 4), 4


@MODELS.register
class RepVGG_B2(RepVGG):
    default_blocks, default_widths = (4, 6, 16, 1), (2.5, 2.5, 2.5, 5)


@MODELS.register
class RepVGG_B2g4(RepVGG):
    default_blocks, default_widths, default_groups = (4, 6, 16, 1), (2.5, 2.5, 2.5, 5), 4


@MODELS.register
class RepVGG_B3(RepVGG):
    default_blocks, default_widths = (4, 6, 16, 1), (3, 3, 3, 5)


@MODELS.register
class RepVGG_B3g4(RepVGG):
    default_blocks, default_widths, default_groups = (4, 6, 16, 1), (3, 3, 3, 5), 4


@MODELS.register
class RepVGG_D2se(RepVGG):
    default_blocks, default_widths, default_use_se = (8, 14, 24, 1), (2.5, 2.5, 2.5, 5), True
