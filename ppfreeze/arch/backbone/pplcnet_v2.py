"""PP-LCNetV2 (PaddleClas 2022): PP-LCNet with re-parameterisable depthwise convolutions.

Parameter names follow PaddleClas's ``legendary_models/pp_lcnet_v2.py`` (and the ShiTu variant in
``variant_models/pp_lcnetv2_variant.py``), so the published ``.pdparams`` load as-is:

    stem.0.conv / stem.0.bn                               3x3 stride-2 conv
    stem.1 / stages.<s>.<i>   . dw_conv | dw_conv_list.<k> | se.conv1|conv2 | pw_conv | pw_conv_1|2
    last_conv.weight (1x1; ShiTu: with bias), fc.weight, fc.bias

A block with ``use_rep`` trains parallel depthwise branches (kxk, (k-2)x(k-2), ..., 1x1 at stride 1),
each conv + BN, summed before the ReLU; its ``dw_conv`` (a conv with bias) is only the slot of
the fused kernel: unused in training (``stop_gradient``), filled by :meth:`PPLCNetV2.export_model`.

Forward: stem -> stages.0..3 -> avg_pool -> last_conv -> act -> dropout -> flatten -> fc.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.nn.initializer import KaimingNormal

from ...config.expr import to_number
from ...config.errors import ConfigError
from ..base import ArchModel
from ..registry import MODELS
from .common import (StagesLayerList, add_last_conv_head, check_bool, check_class_num, check_probability,
                     declare_stages, fold_batch_norm, indexed_stage_map, int_list, last_conv_head,
                     last_conv_head_units, make_divisible, param_attr)

# per stage: (in_channels at scale 1, dw kernel, split_pw, use_rep, use_se, use_shortcut); out = 2 x in
STAGE_CONFIG = (
    (64, 3, False, False, False, False),
    (128, 3, False, False, False, False),
    (256, 5, True, True, True, False),
    (512, 5, False, True, False, True),
)


class ConvBNLayer(nn.Layer):
    """Conv (no bias) -> BN (no weight decay) -> optional ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 groups: int = 1, use_act: bool = True):
        super().__init__()
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                              padding=(kernel_size - 1) // 2, groups=groups,
                              weight_attr=param_attr(initializer=KaimingNormal()), bias_attr=False)
        self.bn = nn.BatchNorm2D(out_channels, weight_attr=param_attr(no_decay=True),
                                 bias_attr=param_attr(no_decay=True))
        self.act = nn.ReLU() if use_act else None

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.bn(self.conv(x))
        return self.act(x) if self.act is not None else x


class SEModule(nn.Layer):
    """Squeeze-and-excitation with a sigmoid gate (PaddleClas names the sigmoid ``hardsigmoid``)."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.conv1 = nn.Conv2D(channels, channels // reduction, 1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2D(channels // reduction, channels, 1)
        self.hardsigmoid = nn.Sigmoid()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x * self.hardsigmoid(self.conv2(self.relu(self.conv1(self.avg_pool(x)))))


class RepDepthwiseSeparable(nn.Layer):
    """Depthwise conv (multi-branch when ``use_rep``) -> ReLU -> optional SE -> pointwise conv(s)
    -> optional residual (only where shapes allow: stride 1 and equal widths)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dw_size: int = 3,
                 split_pw: bool = False, use_rep: bool = False, use_se: bool = False, use_shortcut: bool = False):
        super().__init__()
        self.dw_size = dw_size
        self.use_rep = use_rep
        self.use_shortcut = use_shortcut and stride == 1 and in_channels == out_channels
        if use_rep:
            # branches kxk, (k-2)x(k-2), ... 1x1; a strided 1x1 would skip pixels, so it is left out
            sizes = [k for k in range(dw_size, 0, -2) if not (k == 1 and stride != 1)]
            self.dw_conv_list = nn.LayerList([
                ConvBNLayer(in_channels, in_channels, k, stride, groups=in_channels, use_act=False)
                for k in sizes])
            self.dw_conv = nn.Conv2D(in_channels, in_channels, dw_size, stride=stride,
                                     padding=(dw_size - 1) // 2, groups=in_channels)
            for param in self.dw_conv.parameters():  # the deploy slot: filled by fused(), never trained
                param.stop_gradient = True
        else:
            self.dw_conv_list = None
            self.dw_conv = ConvBNLayer(in_channels, in_channels, dw_size, stride, groups=in_channels)
        self.act = nn.ReLU()
        self.se = SEModule(in_channels) if use_se else None
        if split_pw:
            self.pw_conv_1 = ConvBNLayer(in_channels, out_channels // 2, 1, 1)
            self.pw_conv_2 = ConvBNLayer(out_channels // 2, out_channels, 1, 1)
            self.pw_conv = None
        else:
            self.pw_conv = ConvBNLayer(in_channels, out_channels, 1, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        identity = x
        if self.dw_conv_list is not None:
            y = self.dw_conv_list[0](x)
            for branch in self.dw_conv_list[1:]:
                y = y + branch(x)
            x = self.act(y)
        elif self.use_rep:  # fused deploy form
            x = self.act(self.dw_conv(x))
        else:
            x = self.dw_conv(x)  # ConvBNLayer with its own ReLU
        if self.se is not None:
            x = self.se(x)
        x = self.pw_conv(x) if self.pw_conv is not None else self.pw_conv_2(self.pw_conv_1(x))
        return x + identity if self.use_shortcut else x

    def fused(self) -> "RepDepthwiseSeparable":
        """Fold the depthwise branches into ``dw_conv`` (eval-mode BN statistics) and drop them.

        Works in place and returns the block: ``reparameterized_copy`` calls it on a copy.
        A block without branches is returned unchanged."""
        if self.dw_conv_list is None:
            return self
        kernel, bias = 0, 0
        for branch in self.dw_conv_list:
            k, b = fold_batch_norm(branch.conv.weight, branch.bn)
            pad = (self.dw_size - k.shape[-1]) // 2
            kernel = kernel + (F.pad(k, [pad, pad, pad, pad]) if pad else k)
            bias = bias + b
        self.dw_conv.weight.set_value(kernel)
        self.dw_conv.bias.set_value(bias)
        self.dw_conv_list = None
        return self


class PPLCNetV2(StagesLayerList, ArchModel):
    """PP-LCNetV2; subclasses fix ``scale``, ``depths`` and the default ``dropout_prob``.

    Args:
        class_num: classifier width.
        scale: width multiplier (the variant's by default).
        depths: blocks per stage, 4 integers (the variant's by default).
        dropout_prob: dropout before the classifier.
        use_last_conv: False drops ``last_conv``; the fc then reads the pooled features.
        class_expand: channels of the 1x1 ``last_conv`` after pooling.
    """
    default_scale: float = 1.0
    default_depths: Sequence[int] = (2, 2, 6, 2)
    # ShiTu variant: stage4 keeps the resolution, last_conv has a bias, no ReLU after it
    last_stage_stride: int = 2
    last_conv_bias: bool = False
    last_conv_act: bool = True

    def __init__(self, class_num: int = 1000, scale: Any = None, depths: Optional[Sequence[int]] = None,
                 dropout_prob: Any = 0.2, use_last_conv: bool = True, class_expand: int = 1280):
        super().__init__()
        class_num = check_class_num(class_num)
        scale = float(to_number(self.default_scale if scale is None else scale, "scale"))
        if scale <= 0:
            raise ConfigError("scale", f"expected a positive width multiplier, got {scale!r}")
        depths = int_list(list(self.default_depths) if depths is None else depths, len(STAGE_CONFIG), "depths")
        dropout_prob = check_probability(dropout_prob, "dropout_prob")
        use_last_conv = check_bool(use_last_conv, "use_last_conv")
        class_expand = check_class_num(class_expand, "class_expand")

        stem_width = make_divisible(32 * scale)
        self.stem = nn.Sequential(ConvBNLayer(3, stem_width, 3, 2),
                                  RepDepthwiseSeparable(stem_width, make_divisible(64 * scale), stride=1, dw_size=3))
        last = len(STAGE_CONFIG) - 1
        self.add_sublayer("stages", nn.LayerList([
            nn.Sequential(*[
                RepDepthwiseSeparable(
                    make_divisible((width if i == 0 else 2 * width) * scale), make_divisible(2 * width * scale),
                    stride=(self.last_stage_stride if n == last else 2) if i == 0 else 1, dw_size=kernel,
                    split_pw=split_pw, use_rep=use_rep, use_se=use_se, use_shortcut=use_shortcut)
                for i in range(depths[n])])
            for n, (width, kernel, split_pw, use_rep, use_se, use_shortcut) in enumerate(STAGE_CONFIG)]))

        num_features = add_last_conv_head(self, make_divisible(2 * STAGE_CONFIG[-1][0] * scale), use_last_conv,
                                          class_expand, dropout_prob,
                                          act=nn.ReLU if self.last_conv_act else nn.Identity,
                                          conv_bias_attr=None if self.last_conv_bias else False)
        self.fc = nn.Linear(num_features, class_num)

        self.scale = scale
        self.class_num = class_num
        self.num_features = num_features
        declare_stages(self, indexed_stage_map(["stem"], len(depths), last_conv_head_units(self)))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.stem(x)
        for stage in self.stage_layers:
            x = stage(x)
        return last_conv_head(self, x)


@MODELS.register
class PPLCNetV2_small(PPLCNetV2):
    default_scale, default_depths = 0.75, (2, 2, 4, 2)


@MODELS.register
class PPLCNetV2_base(PPLCNetV2):
    default_scale, default_depths = 1.0, (2, 2, 6, 2)


@MODELS.register
class PPLCNetV2_large(PPLCNetV2):
    default_scale, default_depths = 1.25, (2, 2, 8, 2)


@MODELS.register
class PPLCNetV2_base_ShiTu(PPLCNetV2):
    """PPLCNetV2_base for retrieval (PaddleClas's variant): stage4 at stride 1, ``last_conv`` with a
    bias and no ReLU after it (``act`` is an Identity)."""
    default_scale, default_depths = 1.0, (2, 2, 6, 2)
    last_stage_stride = 1
    last_conv_bias = True
    last_conv_act = False
