"""PP-LCNet (Cui et al. 2021): a CPU-friendly depthwise-separable network, PaddleClas layout.

Parameter names follow PaddleClas's ``legendary_models/pp_lcnet.py`` (the layout of the
published ``PPLCNet_x*_pretrained.pdparams``):

    conv1.conv.weight, conv1.bn.*                      stem
    blocks2..blocks6.<i>.dw_conv / [se.conv1|conv2] / pw_conv
    last_conv.weight (1x1, no bias), fc.weight, fc.bias
    (PPLCNet_x2_5_Tanh: fc.origin_layer.weight, fc.origin_layer.bias, then tanh)

Forward: conv1 -> blocks2..6 -> avg_pool -> last_conv -> act -> dropout -> flatten -> fc.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Union

import paddle
import paddle.nn as nn
from paddle.nn.initializer import KaimingNormal

from ...config.errors import ConfigError
from ...config.expr import to_number
from ..base import ArchModel
from ..registry import MODELS
from .common import (SEModule, add_last_conv_head, check_bool, check_class_num, check_probability, last_conv_head,
                     last_conv_head_units, make_divisible, number_list, param_attr)

# per stage: (kernel, in_channels, out_channels, stride, use_se) at scale 1.0
NET_CONFIG = OrderedDict(
    blocks2=[(3, 16, 32, 1, False)],
    blocks3=[(3, 32, 64, 2, False), (3, 64, 64, 1, False)],
    blocks4=[(3, 64, 128, 2, False), (3, 128, 128, 1, False)],
    blocks5=[(3, 128, 256, 2, False)] + [(5, 256, 256, 1, False)] * 5,
    blocks6=[(5, 256, 512, 2, True), (5, 512, 512, 1, True)],
)
ACTIVATIONS = {"hardswish": nn.Hardswish, "relu": nn.ReLU, "relu6": nn.ReLU6}
# a stride: one int, or [stride_h, stride_w] (PULC text-line models downsample the height only)
Stride = Union[int, List[int]]


def parse_stride_list(values: Optional[Sequence[Any]], key: str = "stride_list") -> List[Stride]:
    """Validate ``stride_list``: 5 strides (conv1, first block of blocks3..blocks6), each an int
    or an ``[h, w]`` pair, as PaddleClas passes them to ``Conv2D(stride=...)``."""
    if values is None:
        return [2] * 5
    if not isinstance(values, (list, tuple)) or len(values) != 5:
        raise ConfigError(key, f"expected a list of 5 strides (conv1, blocks3..blocks6), got {values!r}",
                          "e.g. stride_list: [2, 2, 2, 2, 2] or [2, [2, 1], [2, 1], [2, 1], [2, 1]]")
    return [_stride(v, f"{key}[{i}]") for i, v in enumerate(values)]


def _stride(value: Any, key: str) -> Stride:
    def positive_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1
    if positive_int(value):
        return value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(positive_int(v) for v in value):
        return list(value)
    raise ConfigError(key, f"expected a positive integer or a pair [stride_h, stride_w], got {value!r}")


class ConvBNLayer(nn.Layer):
    """Conv -> BN (no weight decay on BN) -> activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: Stride,
                 groups: int = 1, act: str = "hardswish", lr_mult: float = 1.0):
        super().__init__()
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                              padding=(kernel_size - 1) // 2, groups=groups,
                              weight_attr=param_attr(lr_mult, initializer=KaimingNormal()), bias_attr=False)
        self.bn = nn.BatchNorm2D(out_channels, weight_attr=param_attr(lr_mult, no_decay=True),
                                 bias_attr=param_attr(lr_mult, no_decay=True))
        self.act = ACTIVATIONS[act]()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.act(self.bn(self.conv(x)))


class DepthwiseSeparable(nn.Layer):
    """Depthwise kxk conv -> optional SE -> pointwise 1x1 conv."""

    def __init__(self, in_channels: int, out_channels: int, stride: Stride, kernel_size: int,
                 use_se: bool, act: str, lr_mult: float):
        super().__init__()
        self.dw_conv = ConvBNLayer(in_channels, in_channels, kernel_size, stride,
                                   groups=in_channels, act=act, lr_mult=lr_mult)
        self.se = SEModule(in_channels, lr_mult=lr_mult) if use_se else None
        self.pw_conv = ConvBNLayer(in_channels, out_channels, 1, 1, act=act, lr_mult=lr_mult)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.dw_conv(x)
        if self.se is not None:
            x = self.se(x)
        return self.pw_conv(x)


@MODELS.register
class PPLCNet(ArchModel):
    """PP-LCNet at any width ``scale``; the named variants below fix the scale.

    Args:
        scale: width multiplier (PPLCNet_x0_25 ... fix it).
        class_num: classifier width.
        dropout_prob: dropout before the classifier.
        class_expand: channels of the 1x1 ``last_conv`` after pooling.
        lr_mult_list: 6 learning-rate multipliers: conv1, blocks2..blocks6 (a list, or the
            list as a string, as PaddleClas accepts).
        stride_list: 5 strides: conv1, first block of blocks3..blocks6. Each is an int or a
            pair ``[stride_h, stride_w]``: PULC's text-line configs pass
            ``[2, [2, 1], [2, 1], [2, 1], [2, 1]]`` to halve only the height in blocks3..6.
        use_last_conv: False drops ``last_conv``; the fc then reads the pooled features.
        act: "hardswish", "relu" or "relu6".
    """
    fixed_scale: Optional[float] = None
    #: PPLCNet_x2_5_Tanh: the classifier's output goes through tanh (``fc`` wraps the Linear)
    tanh_output: bool = False

    def __init__(self, scale: Optional[float] = None, class_num: int = 1000, dropout_prob: float = 0.2,
                 class_expand: int = 1280, lr_mult_list: Optional[Sequence[float]] = None,
                 stride_list: Optional[Sequence[Stride]] = None, use_last_conv: bool = True,
                 act: str = "hardswish"):
        super().__init__()
        scale = self._resolve_scale(scale)
        class_num = check_class_num(class_num)
        lr_mults = number_list(lr_mult_list, 6, 1.0, "lr_mult_list")
        strides = parse_stride_list(stride_list)
        if act not in ACTIVATIONS:
            raise ConfigError("act", f"expected one of {list(ACTIVATIONS)}, got {act!r}")
        dropout_prob = check_probability(dropout_prob, "dropout_prob")
        class_expand = check_class_num(class_expand, "class_expand")
        use_last_conv = check_bool(use_last_conv, "use_last_conv")

        self.conv1 = ConvBNLayer(3, make_divisible(16 * scale), 3, strides[0], act=act, lr_mult=lr_mults[0])
        for n, (stage, specs) in enumerate(NET_CONFIG.items()):
            # stride_list overrides the first block of blocks3..blocks6
            first_stride = strides[n] if n > 0 else specs[0][3]
            setattr(self, stage, nn.Sequential(*[
                DepthwiseSeparable(make_divisible(c_in * scale), make_divisible(c_out * scale),
                                   stride=first_stride if i == 0 else s, kernel_size=k, use_se=se,
                                   act=act, lr_mult=lr_mults[n + 1])
                for i, (k, c_in, c_out, s, se) in enumerate(specs)]))

        num_features = add_last_conv_head(self, make_divisible(NET_CONFIG["blocks6"][-1][2] * scale), use_last_conv,
                                          class_expand, dropout_prob, act=ACTIVATIONS[act])
        self.fc = TanhSuffix(nn.Linear(num_features, class_num)) if self.tanh_output \
            else nn.Linear(num_features, class_num)

        self.scale = scale
        self.class_num = class_num
        self.num_features = num_features
        self.stages = self._stages()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.conv1(x)
        x = self.blocks2(x)
        x = self.blocks3(x)
        x = self.blocks4(x)
        x = self.blocks5(x)
        x = self.blocks6(x)
        return last_conv_head(self, x)

    def _resolve_scale(self, scale: Optional[float]) -> float:
        if self.fixed_scale is None:
            return 1.0 if scale is None else float(to_number(scale, "scale"))
        if scale is not None and to_number(scale, "scale") != self.fixed_scale:
            raise ConfigError("scale", f"{type(self).__name__} has scale {self.fixed_scale}, got {scale!r}",
                              f"use 'name: PPLCNet' with 'scale: {scale}' for another width")
        return self.fixed_scale

    def _stages(self) -> Dict[str, List[str]]:
        """stem (conv1), blocks2..blocks6, head -- in forward order."""
        stages: Dict[str, List[str]] = OrderedDict(stem=["conv1"])
        for stage in NET_CONFIG:
            stages[stage] = [stage]
        stages["head"] = last_conv_head_units(self)
        return stages


class TanhSuffix(nn.Layer):
    """A layer followed by tanh; PaddleClas wraps ``fc`` like this (keys ``fc.origin_layer.*``)."""

    def __init__(self, origin_layer: nn.Layer):
        super().__init__()
        self.origin_layer = origin_layer
        self.tanh = nn.Tanh()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.tanh(self.origin_layer(x))


@MODELS.register
class PPLCNetBaseNet(PPLCNet):
    """PaddleClas's name for PP-LCNet at any ``scale`` (default 1.0): the same as ``PPLCNet``."""


@MODELS.register
class PPLCNet_x0_25(PPLCNet):
    fixed_scale = 0.25


@MODELS.register
class PPLCNet_x0_35(PPLCNet):
    fixed_scale = 0.35


@MODELS.register
class PPLCNet_x0_5(PPLCNet):
    fixed_scale = 0.5


@MODELS.register
class PPLCNet_x0_75(PPLCNet):
    fixed_scale = 0.75


@MODELS.register
class PPLCNet_x1_0(PPLCNet):
    fixed_scale = 1.0


@MODELS.register
class PPLCNet_x1_5(PPLCNet):
    fixed_scale = 1.5


@MODELS.register
class PPLCNet_x2_0(PPLCNet):
    fixed_scale = 2.0


@MODELS.register
class PPLCNet_x2_5(PPLCNet):
    fixed_scale = 2.5


@MODELS.register
class PPLCNet_x2_5_Tanh(PPLCNet):
    """PPLCNet_x2_5 whose logits go through tanh (PaddleClas's variant_models)."""
    fixed_scale = 2.5
    tanh_output = True
