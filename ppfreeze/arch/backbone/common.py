"""Small helpers shared by the backbones: parameter attributes, argument checks, common layers
(conv-BN-activation, squeeze-and-excitation, channel shuffle) and stage grouping."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.regularizer import L2Decay

from ...config.errors import ConfigError
from ...config.expr import to_number
from ...config.schema import MAX_CLASS_NUM


def param_attr(lr_mult: float = 1.0, no_decay: bool = False, initializer: Any = None) -> ParamAttr:
    """A ParamAttr carrying a per-stage learning-rate multiplier (and optionally no weight decay)."""
    regularizer = L2Decay(0.0) if no_decay else None
    return ParamAttr(learning_rate=lr_mult, regularizer=regularizer, initializer=initializer)


def number_list(values: Optional[Sequence[Any]], length: int, default: float, key: str) -> List[float]:
    """Validate a per-stage list such as ``lr_mult_list``; ``None`` means ``[default] * length``."""
    if values is None:
        return [default] * length
    if not isinstance(values, (list, tuple)) or len(values) != length:
        raise ConfigError(key, f"expected a list of {length} numbers (one per stage), got {values!r}",
                          f"e.g. {key.split('.')[-1]}: {[default] * length}")
    return [to_number(v, f"{key}[{i}]") for i, v in enumerate(values)]


def check_class_num(class_num: Any, key: str = "class_num") -> int:
    """``class_num`` must be a positive integer (the width of the classifier)."""
    if isinstance(class_num, bool) or not isinstance(class_num, int) or class_num < 1:
        raise ConfigError(key, f"expected a positive integer, got {class_num!r}",
                          "set Arch.class_num (or Global.class_num) to the number of classes")
    if class_num > MAX_CLASS_NUM:
        raise ConfigError(key, f"{class_num} is more than Paddle can size a layer with (2**31-1)",
                          "set Arch.class_num (or Global.class_num) to the number of classes")
    return class_num


def check_positive_int(value: Any, key: str) -> int:
    """``value`` if it is a positive integer (a channel count, ...), else a ConfigError naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(key, f"expected a positive integer, got {value!r}")
    return value


def check_probability(value: Any, key: str) -> float:
    """A probability such as ``dropout_prob`` or ``drop_path_rate``: a number in [0, 1)."""
    number = to_number(value, key)
    if not 0 <= number < 1:
        raise ConfigError(key, f"expected a number in [0, 1), got {value!r}")
    return float(number)


def check_choice(value: Any, choices: Sequence[Any], key: str, hint: Optional[str] = None) -> Any:
    """``value`` must be one of ``choices`` (a ConfigError naming ``key`` otherwise)."""
    if value not in choices:
        raise ConfigError(key, f"expected one of {list(choices)}, got {value!r}", hint)
    return value


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a scaled channel count to a multiple of ``divisor`` without losing more than 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish, "swish": nn.Swish, "gelu": nn.GELU}


def make_activation(act: Optional[str]) -> Optional[nn.Layer]:
    """The activation layer named ``act`` (None for no activation)."""
    if act is None:
        return None
    if act not in ACTIVATIONS:
        raise ConfigError("act", f"expected one of {list(ACTIVATIONS)}, got {act!r}")
    return ACTIVATIONS[act]()


class ConvBNAct(nn.Sequential):
    """Conv (no bias) -> BN -> optional activation, as one named sequence.

    ``names`` keeps a family's sublayer names, which are its state-dict keys: ``conv`` / ``bn``
    in PaddleClas's newer models, ``_conv`` / ``_batch_norm`` in the older ones. The padding is
    ``(kernel_size - 1) // 2`` ("same" for odd kernels at stride 1).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, act: Optional[str] = None, names: Sequence[str] = ("conv", "bn", "act"),
                 bn_no_decay: bool = False, conv_init: Any = None, lr_mult: float = 1.0):
        conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2,
                         groups=groups, weight_attr=param_attr(lr_mult, initializer=conv_init), bias_attr=False)
        bn = nn.BatchNorm2D(out_channels, weight_attr=param_attr(lr_mult, no_decay=bn_no_decay),
                            bias_attr=param_attr(lr_mult, no_decay=bn_no_decay))
        layers = [(names[0], conv), (names[1], bn)]
        if act is not None:
            layers.append((names[2], make_activation(act)))
        super().__init__(*layers)


class Hardsigmoid(nn.Layer):
    """``hardsigmoid(x) = clip(slope * x + offset, 0, 1)`` with a chosen slope (nn.Hardsigmoid fixes ~1/6)."""

    def __init__(self, slope: float, offset: float = 0.5):
        super().__init__()
        self.slope, self.offset = slope, offset

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.hardsigmoid(x, slope=self.slope, offset=self.offset)


class SEModule(nn.Layer):
    """Squeeze-and-excitation with 1x1 convs: channel gates from globally pooled features.

    ``gate_slope`` is the hard-sigmoid slope: None for nn.Hardsigmoid's (~1/6; PP-LCNet, ESNet),
    0.2 in MobileNetV3.
    """

    def __init__(self, channels: int, reduction: int = 4, lr_mult: float = 1.0, gate_slope: Optional[float] = None):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.conv1 = nn.Conv2D(channels, channels // reduction, 1,
                               weight_attr=param_attr(lr_mult), bias_attr=param_attr(lr_mult))
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2D(channels // reduction, channels, 1,
                               weight_attr=param_attr(lr_mult), bias_attr=param_attr(lr_mult))
        self.hardsigmoid = nn.Hardsigmoid() if gate_slope is None else Hardsigmoid(gate_slope)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        gate = self.hardsigmoid(self.conv2(self.relu(self.conv1(self.avg_pool(x)))))
        return x * gate


def channel_shuffle(x: paddle.Tensor, groups: int) -> paddle.Tensor:
    """Interleave the channels of ``groups`` equal groups (ShuffleNet): [a0 a1 | b0 b1] -> [a0 b0 a1 b1]."""
    _, channels, height, width = x.shape
    x = paddle.reshape(x, [-1, groups, channels // groups, height, width])
    x = paddle.transpose(x, [0, 2, 1, 3, 4])
    return paddle.reshape(x, [-1, channels, height, width])


def split_at_downsampling(units: Sequence[str], strides: Sequence[int]) -> List[List[str]]:
    """Group consecutive blocks into stages: a block with stride > 1 starts a new stage (the first
    block always starts one), so each stage runs at one resolution."""
    groups: List[List[str]] = []
    for unit, stride in zip(units, strides):
        if not groups or stride > 1:
            groups.append([])
        groups[-1].append(unit)
    return groups


def stage_map(stem: Sequence[str], groups: Sequence[Sequence[str]], head: Sequence[str]) -> Dict[str, List[str]]:
    """``stem``, ``stage1``..``stageN`` (one per block group), ``head`` -- the ``stages`` contract."""
    stages: Dict[str, List[str]] = OrderedDict(stem=list(stem))
    for n, group in enumerate(groups, 1):
        stages[f"stage{n}"] = list(group)
    stages["head"] = list(head)
    return stages


class DropPath(nn.Layer):
    """Stochastic depth: in training, zero a residual branch per sample with probability
    ``drop_prob`` and scale the kept ones by ``1 / (1 - drop_prob)``; identity in eval."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = paddle.floor(keep + paddle.rand([x.shape[0]] + [1] * (x.ndim - 1), dtype=x.dtype))
        return x / keep * mask
