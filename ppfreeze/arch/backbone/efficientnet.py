"""EfficientNet B0..B7 (Tan & Le 2019), PaddleClas's ``model_zoo/efficientnet.py`` layout.

Parameter names follow the published ``EfficientNetB*_pretrained.pdparams``, including their
unusual sublayer names (a group's first MBConv block is ``_blocks.<i>.``, its repeats
``block.<i>.``, both with a trailing dot):

    _ef._conv_stem._conv._conv._conv.weight, _ef._conv_stem._conv._bn.*            stem
    _ef._blocks.<i>.._ecn|_dcn|_pcn._conv._conv._conv.weight / ._conv._bn.*        MBConv
    _ef._blocks.<i>.._se._conv1|_conv2._conv.{weight,bias}                         SE
    _conv._conv._conv.weight, _conv._bn.*, _fc.{weight,bias}                        head

Forward: stem -> swish -> MBConv blocks -> 1x1 head conv + BN + swish -> pool -> dropout
-> squeeze -> fc.

Padding (``padding_type``):
  * ``SAME`` (B0..B7 default): TensorFlow "SAME" padding computed once for the variant's
    native resolution (224 for B0 ... 600 for B7).  Where that padding is asymmetric (a
    stride-2 conv over an even size) the conv pads ``top + stride`` on every side and drops
    its first output row and column, exactly as PaddleClas does, at any input size.
  * ``DYNAMIC`` (B0_small default): symmetric ``((stride - 1) + (kernel - 1)) // 2``.
"""
from __future__ import annotations

import logging
import math
from collections import OrderedDict
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...config.errors import ConfigError, check_mapping
from ...config.expr import to_number
from ..base import ArchModel
from ..registry import MODELS
from .common import check_class_num

logger = logging.getLogger("ppfreeze")

# variant -> (width coefficient, depth coefficient, native resolution, dropout)
VARIANTS = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
}


class GroupSpec(NamedTuple):
    """One group of MBConv blocks at width/depth coefficient 1.0."""
    repeats: int
    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int
    se_ratio: float


GROUPS = (
    GroupSpec(1, 3, 1, 1, 32, 16, 0.25),
    GroupSpec(2, 3, 2, 6, 16, 24, 0.25),
    GroupSpec(2, 5, 2, 6, 24, 40, 0.25),
    GroupSpec(3, 3, 2, 6, 40, 80, 0.25),
    GroupSpec(3, 5, 1, 6, 80, 112, 0.25),
    GroupSpec(4, 5, 2, 6, 112, 192, 0.25),
    GroupSpec(1, 3, 1, 6, 192, 320, 0.25),
)

# the global hyper-parameters ``override_params`` may replace (PaddleClas's GlobalParams fields)
GLOBAL_DEFAULTS: Dict[str, Any] = {
    "batch_norm_momentum": 0.99,
    "batch_norm_epsilon": 1e-3,
    "dropout_rate": None,  # per variant
    "num_classes": 1000,  # unused by the network (class_num sets the classifier), as in PaddleClas
    "width_coefficient": None,  # per variant
    "depth_coefficient": None,  # per variant
    "depth_divisor": 8,
    "depth_trunc": "ceil",
    "min_depth": None,
    "drop_connect_rate": 0.2,
}
PADDING_TYPES = ("SAME", "DYNAMIC")


def round_filters(filters: int, width: Optional[float], divisor: int, min_depth: Optional[int]) -> int:
    """Scale a channel count by ``width`` and round it to a multiple of ``divisor`` (at most -10%)."""
    if not width:
        return filters
    scaled = filters * width
    rounded = max(min_depth or divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def round_repeats(repeats: int, depth: Optional[float], trunc: str) -> int:
    """Scale a group's block count by ``depth`` (ceil, or round with ``depth_trunc: round``)."""
    if not depth:
        return repeats
    return max(1, round(depth * repeats)) if trunc == "round" else int(math.ceil(depth * repeats))


def native_sizes(resolution: int) -> List[int]:
    """Input size of the stem (index 0) and of each MBConv group (1..7) at the native resolution;
    index 7 is also the head's input size."""
    sizes = [resolution, -(-resolution // 2)]
    for group in GROUPS[:-1]:
        sizes.append(-(-sizes[-1] // group.stride))
    return sizes


def conv_padding(padding_type: str, kernel: int, stride: int, native: int) -> Tuple[int, bool]:
    """(symmetric padding, crop first row/column) of a conv under ``padding_type``."""
    if padding_type == "DYNAMIC":
        return ((stride - 1) + (kernel - 1)) // 2, False
    # TF "SAME" at the native size; an asymmetric split (top < bottom) is emulated by padding
    # top + stride on both sides and dropping the first output row and column
    total = max(kernel - (stride if native % stride == 0 else native % stride), 0)
    top, bottom = total // 2, total - total // 2
    return (top + stride, True) if top != bottom else (bottom, False)


class PaddedConv(nn.Layer):
    """A conv with EfficientNet's padding rule and an optional activation (swish / sigmoid)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1,
                 padding_type: str = "SAME", native: int = 1, act: Optional[str] = None, bias: bool = False):
        super().__init__()
        padding, self.crop = conv_padding(padding_type, kernel, stride, native)
        self._conv = nn.Conv2D(in_channels, out_channels, kernel, stride=stride, padding=padding,
                               groups=groups, bias_attr=None if bias else False)
        self.act = act

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._conv(x)
        if self.act == "swish":
            x = F.swish(x)
        elif self.act == "sigmoid":
            x = F.sigmoid(x)
        if self.crop:
            x = x[:, :, 1:, 1:]
        return x


class ConvBN(nn.Layer):
    """PaddedConv -> BN (momentum / epsilon from the global parameters) -> optional swish."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, hp: Dict[str, Any], stride: int = 1,
                 groups: int = 1, padding_type: str = "SAME", native: int = 1, swish: bool = False):
        super().__init__()
        self._conv = PaddedConv(in_channels, out_channels, kernel, stride, groups, padding_type, native)
        self._bn = nn.BatchNorm2D(out_channels, momentum=hp["batch_norm_momentum"],
                                  epsilon=hp["batch_norm_epsilon"])
        self.swish = swish

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._bn(self._conv(x))
        return F.swish(x) if self.swish else x


class Holder(nn.Layer):
    """Holds one ConvBN as ``_conv``: PaddleClas nests its expand / depthwise / project / stem
    convs one level deeper than the conv itself, and the keys keep that level."""

    def __init__(self, conv: ConvBN):
        super().__init__()
        self._conv = conv

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self._conv(x)


class SEBlock(nn.Layer):
    """Squeeze-and-excitation with a swish bottleneck and sigmoid gates."""

    def __init__(self, channels: int, squeezed: int, padding_type: str):
        super().__init__()
        self._pool = nn.AdaptiveAvgPool2D(1)
        self._conv1 = PaddedConv(channels, squeezed, 1, padding_type=padding_type, act="swish", bias=True)
        self._conv2 = PaddedConv(squeezed, channels, 1, padding_type=padding_type, act="sigmoid", bias=True)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x * self._conv2(self._conv1(self._pool(x)))


class MBConvBlock(nn.Layer):
    """[1x1 expand + swish] -> depthwise kxk + swish -> [SE] -> 1x1 project [+ residual].

    ``residual`` is decided by the caller: PaddleClas adds it only on a group's repeated blocks
    (stride 1, same width), never on a group's first block.
    """

    def __init__(self, in_channels: int, out_channels: int, spec: GroupSpec, stride: int, use_se: bool,
                 residual: bool, drop_connect_rate: float, hp: Dict[str, Any], padding_type: str, native: int):
        super().__init__()
        mid = in_channels * spec.expand
        conv = dict(hp=hp, padding_type=padding_type, native=native)
        self._ecn = Holder(ConvBN(in_channels, mid, 1, **conv)) if spec.expand != 1 else None
        self._dcn = Holder(ConvBN(mid, mid, spec.kernel, stride=stride, groups=mid, **conv))
        self._se = SEBlock(mid, max(1, int(in_channels * spec.se_ratio)), padding_type) if use_se else None
        self._pcn = Holder(ConvBN(mid, out_channels, 1, **conv))
        self.residual = residual
        self.drop_connect_rate = drop_connect_rate

    def forward(self, inputs: paddle.Tensor) -> paddle.Tensor:
        x = inputs
        if self._ecn is not None:
            x = F.swish(self._ecn(x))
        x = F.swish(self._dcn(x))
        if self._se is not None:
            x = self._se(x)
        x = self._pcn(x)
        if self.residual:
            if self.drop_connect_rate and self.training:
                x = drop_connect(x, self.drop_connect_rate)
            x = x + inputs
        return x


def drop_connect(x: paddle.Tensor, prob: float) -> paddle.Tensor:
    """Drop the residual branch for whole samples with probability ``prob`` (training only)."""
    keep = 1.0 - prob
    mask = paddle.floor(keep + paddle.rand([x.shape[0], 1, 1, 1], dtype=x.dtype))
    return x * mask / keep


class ExtractFeatures(nn.Layer):
    """Stem + MBConv blocks (PaddleClas's ``_ef``); ``groups`` lists each group's block names."""

    def __init__(self, hp: Dict[str, Any], padding_type: str, use_se: bool, fix_stem: bool, natives: List[int]):
        super().__init__()
        def rf(channels: int) -> int:
            return round_filters(channels, hp["width_coefficient"], hp["depth_divisor"], hp["min_depth"])

        repeats = [round_repeats(g.repeats, hp["depth_coefficient"], hp["depth_trunc"]) for g in GROUPS]
        stem_out = 32 if fix_stem else rf(32)
        self._conv_stem = Holder(ConvBN(3, stem_out, 3, hp, stride=2, padding_type=padding_type, native=natives[0]))

        total, idx = sum(repeats), 0
        self.groups: List[List[str]] = []
        for g, (spec, count) in enumerate(zip(GROUPS, repeats)):
            in_ch = spec.in_channels if fix_stem and g == 0 else rf(spec.in_channels)
            out_ch = rf(spec.out_channels)
            names = []
            for i in range(count):
                first = i == 0
                rate = hp["drop_connect_rate"] * idx / total if hp["drop_connect_rate"] else 0.0
                block = MBConvBlock(in_ch if first else out_ch, out_ch, spec, spec.stride if first else 1,
                                    use_se=use_se and 0 < spec.se_ratio <= 1, residual=not first,
                                    drop_connect_rate=rate, hp=hp, padding_type=padding_type,
                                    native=natives[g + 1])
                name = f"_blocks.{idx}." if first else f"block.{idx}."
                self.add_sublayer(name, block)
                names.append(name)
                idx += 1
            self.groups.append(names)
        self.out_channels = rf(GROUPS[-1].out_channels)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = F.swish(self._conv_stem(x))
        for names in self.groups:
            for name in names:
                x = self._sub_layers[name](x)
        return x


class EfficientNet(ArchModel):
    """EfficientNet; subclasses fix the variant and PaddleClas's default padding / SE choice.

    Args:
        class_num: classifier width.
        padding_type: "SAME" (TF padding at the native resolution) or "DYNAMIC" (symmetric).
        override_params: replaces global hyper-parameters, e.g. ``{batch_norm_epsilon: 1.0e-5,
            dropout_rate: 0.3, drop_connect_rate: 0.1, width_coefficient: 1.0, ...}``.
        use_se: squeeze-and-excitation in every block.
        fix_stem: keep the stem at 32 channels whatever the width coefficient.
        num_features: channels of the 1x1 head conv (default 1280 scaled by the width).
    """
    variant: str = "b0"
    default_padding: str = "SAME"
    default_use_se: bool = True

    def __init__(self, class_num: int = 1000, padding_type: Optional[str] = None,
                 override_params: Optional[Dict[str, Any]] = None, use_se: Optional[bool] = None,
                 fix_stem: bool = False, num_features: Optional[int] = None):
        super().__init__()
        class_num = check_class_num(class_num)
        padding_type = self.default_padding if padding_type is None else padding_type
        if padding_type not in PADDING_TYPES:
            raise ConfigError("padding_type", f"expected one of {list(PADDING_TYPES)}, got {padding_type!r}",
                              "PaddleClas's VALID (no padding) shrinks the depthwise outputs, so its residual "
                              "additions fail; SAME is the published models' padding")
        use_se = self.default_use_se if use_se is None else bool(use_se)
        hp = global_params(self.variant, override_params)
        natives = native_sizes(VARIANTS[self.variant][2])

        self._ef = ExtractFeatures(hp, padding_type, use_se, bool(fix_stem), natives)
        width = int(num_features) if num_features else \
            round_filters(1280, hp["width_coefficient"], hp["depth_divisor"], hp["min_depth"])
        self._conv = ConvBN(self._ef.out_channels, width, 1, hp, padding_type=padding_type, native=natives[7],
                            swish=True)
        self._pool = nn.AdaptiveAvgPool2D(1)
        self._drop = nn.Dropout(p=hp["dropout_rate"], mode="upscale_in_train") if hp["dropout_rate"] else None
        self._fc = self.build_classifier(width, class_num)

        self.class_num = class_num
        self.num_features = width
        self.stages = self._stages()

    def build_classifier(self, in_features: int, class_num: int) -> nn.Layer:
        """The ``_fc`` classifier (a variant may replace it)."""
        return nn.Linear(in_features, class_num)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._ef(x)
        x = self._pool(self._conv(x))
        if self._drop is not None:
            x = self._drop(x)
        x = paddle.squeeze(x, axis=[2, 3])
        return self._fc(x)

    def _stages(self) -> Dict[str, List[str]]:
        """stem, stage1..stage7 (the MBConv groups), head -- in forward order."""
        stages: Dict[str, List[str]] = OrderedDict(stem=["_ef._conv_stem"])
        for n, names in enumerate(self._ef.groups, 1):
            stages[f"stage{n}"] = [f"_ef.{name}" for name in names]
        stages["head"] = ["_conv", "_pool"] + (["_drop"] if self._drop is not None else []) + ["_fc"]
        return stages


def global_params(variant: str, override_params: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The variant's global hyper-parameters with ``override_params`` applied (checked)."""
    width, depth, _, dropout = VARIANTS[variant]
    hp = dict(GLOBAL_DEFAULTS, width_coefficient=width, depth_coefficient=depth, dropout_rate=dropout)
    if not override_params:
        return hp
    check_mapping(override_params, "override_params", list(GLOBAL_DEFAULTS), "{batch_norm_epsilon: 1.0e-5}")
    for key, value in override_params.items():
        name = f"override_params.{key}"
        if key == "depth_trunc":
            if value not in ("ceil", "round"):
                raise ConfigError(name, f"expected 'ceil' or 'round', got {value!r}")
        elif key == "num_classes":
            logger.warning("%s is ignored (as in PaddleClas); class_num sets the classifier width", name)
        elif value is not None:
            value = to_number(value, name)
            if key in ("depth_divisor", "min_depth") and (value != int(value) or value < 1):
                raise ConfigError(name, f"expected a positive integer, got {value!r}")
            if key in ("dropout_rate", "drop_connect_rate") and not 0 <= value < 1:
                raise ConfigError(name, f"expected a probability in [0, 1), got {value!r}")
            if key in ("depth_divisor", "min_depth"):
                value = int(value)
        hp[key] = value
    return hp


@MODELS.register
class EfficientNetB0_small(EfficientNet):
    """B0 without SE blocks, with DYNAMIC padding."""
    variant, default_padding, default_use_se = "b0", "DYNAMIC", False


@MODELS.register
class EfficientNetB0(EfficientNet):
    variant = "b0"


@MODELS.register
class EfficientNetB1(EfficientNet):
    variant = "b1"


@MODELS.register
class EfficientNetB2(EfficientNet):
    variant = "b2"


@MODELS.register
class EfficientNetB3(EfficientNet):
    variant = "b3"


@MODELS.register
class EfficientNetB4(EfficientNet):
    variant = "b4"


@MODELS.register
class EfficientNetB5(EfficientNet):
    variant = "b5"


@MODELS.register
class EfficientNetB6(EfficientNet):
    variant = "b6"


@MODELS.register
class EfficientNetB7(EfficientNet):
    variant = "b7"


@MODELS.register
class EfficientNetB3_watermark(EfficientNet):
    """PaddleClas's watermark classifier: EfficientNetB3 (DYNAMIC padding, BN epsilon 1e-5) whose
    ``_fc`` is an MLP ``num_features -> 625 -> 256 -> class_num``.

    PaddleClas fixes the last layer at 2 outputs whatever ``class_num`` says; here ``class_num``
    (default 2, the published model's) sets it.
    """
    variant = "b3"
    default_padding = "DYNAMIC"

    def __init__(self, class_num: int = 2, padding_type: Optional[str] = None,
                 override_params: Optional[Dict[str, Any]] = None, use_se: Optional[bool] = None,
                 fix_stem: bool = False, num_features: Optional[int] = None):
        override_params = {"batch_norm_epsilon": 1e-5} if override_params is None else override_params
        super().__init__(class_num, padding_type, override_params, use_se, fix_stem, num_features)

    def build_classifier(self, in_features: int, class_num: int) -> nn.Layer:
        return nn.Sequential(nn.Linear(in_features, 625), nn.ReLU(), nn.Dropout(p=0.3),
                             nn.Linear(625, 256), nn.ReLU(), nn.Linear(256, class_num))
