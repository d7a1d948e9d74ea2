"""MobileNetV4 (Qin et al. 2024): universal inverted bottlenecks and mobile multi-query
attention, PaddleClas layout.

Parameter names follow PaddleClas's ``legendary_models/mobilenet_v4.py`` (the layout of the
published ``MobileNetV4_*_pretrained.pdparams``):

    conv_stem.conv.weight, conv_stem.bn.*                                   stem (3x3, stride 2)
    blocks.<i>: a conv-BN block (conv, bn), an edge residual (conv_exp, conv_pwl),
        a universal inverted residual ([dw_start], pw_exp, [dw_mid], pw_proj, [layer_scale.gamma])
        or multi-query attention (norm, query_proj, [key_down_proj, value_down_proj],
        key_proj, value_proj, proj, [layer_scale.gamma])
    conv_head.conv|bn (1x1 after pooling), classifier.weight, classifier.bias

Forward: conv_stem -> blocks -> global_pool -> conv_head -> flatten -> classifier.  Stages
follow PaddleClas's stage patterns: one per resolution, and the last 1x1 conv block (to 960
channels) as a stage of its own; e.g. conv_small: blocks 0-1 | 2-3 | 4-9 | 10-15 | 16.

As in PaddleClas, ``drop_rate`` is accepted but not applied (PaddleClas builds its dropout layer
and never calls it; the published weights were trained that way), and the attention scale is
``query_dim ** -0.5`` (all heads' width), not per head.
"""
from __future__ import annotations

import logging
from typing import List, Optional

import paddle
import paddle.nn as nn

from ...config.errors import ConfigError
from ..base import ArchModel
from ..registry import MODELS
from .common import (ConvBNAct, DropPath, check_class_num, check_positive_int, check_probability, make_divisible,
                     param_attr, split_at_downsampling, stage_map)

logger = logging.getLogger("ppfreeze")

# block specs at scale 1.0, as in PaddleClas:
#   ("cn", out, kernel, act, stride)                                     conv-BN-act
#   ("er", out, mid, kernel, act, stride)                                edge residual
#   ("uir", out, mid, start_kernel, mid_kernel, act, stride)             universal inverted residual (0: no conv)
#   ("mqa", out, kv_dim, kernel, heads, kv_stride, act, stride)          mobile multi-query attention
_UIR_SMALL_3 = [("uir", 96, 192, 5, 5, "relu", 2)] + [("uir", 96, 192, 0, 3, "relu", 1)] * 4 \
    + [("uir", 96, 384, 3, 0, "relu", 1)]
NET_CONFIG = {
    "conv_small": [
        ("cn", 32, 3, "relu", 2), ("cn", 32, 1, "relu", 1),
        ("cn", 96, 3, "relu", 2), ("cn", 64, 1, "relu", 1),
        *_UIR_SMALL_3,
        ("uir", 128, 576, 3, 3, "relu", 2), ("uir", 128, 512, 5, 5, "relu", 1), ("uir", 128, 512, 0, 5, "relu", 1),
        ("uir", 128, 384, 0, 5, "relu", 1), ("uir", 128, 512, 0, 3, "relu", 1), ("uir", 128, 512, 0, 3, "relu", 1),
        ("cn", 960, 1, "relu", 1),
    ],
    "conv_medium": [
        ("er", 48, 128, 3, "relu", 2),
        ("uir", 80, 192, 3, 5, "relu", 2), ("uir", 80, 160, 3, 3, "relu", 1),
        ("uir", 160, 480, 3, 5, "relu", 2), ("uir", 160, 640, 3, 3, "relu", 1), ("uir", 160, 640, 3, 3, "relu", 1),
        ("uir", 160, 640, 3, 5, "relu", 1), ("uir", 160, 640, 3, 3, "relu", 1), ("uir", 160, 640, 3, 0, "relu", 1),
        ("uir", 160, 320, 0, 0, "relu", 1), ("uir", 160, 640, 3, 0, "relu", 1),
        ("uir", 256, 960, 5, 5, "relu", 2), ("uir", 256, 1024, 5, 5, "relu", 1), ("uir", 256, 1024, 3, 5, "relu", 1),
        ("uir", 256, 1024, 3, 5, "relu", 1), ("uir", 256, 1024, 0, 0, "relu", 1), ("uir", 256, 1024, 3, 0, "relu", 1),
        ("uir", 256, 512, 3, 5, "relu", 1), ("uir", 256, 1024, 5, 5, "relu", 1), ("uir", 256, 1024, 0, 0, "relu", 1),
        ("uir", 256, 1024, 0, 0, "relu", 1), ("uir", 256, 512, 5, 0, "relu", 1),
        ("cn", 960, 1, "relu", 1),
    ],
    "conv_large": [
        ("er", 48, 96, 3, "relu", 2),
        ("uir", 96, 192, 3, 5, "relu", 2), ("uir", 96, 384, 3, 3, "relu", 1),
        ("uir", 192, 384, 3, 5, "relu", 2), ("uir", 192, 768, 3, 3, "relu", 1), ("uir", 192, 768, 3, 3, "relu", 1),
        ("uir", 192, 768, 3, 3, "relu", 1), ("uir", 192, 768, 3, 5, "relu", 1),
        *[("uir", 192, 768, 5, 3, "relu", 1)] * 5, ("uir", 192, 768, 3, 0, "relu", 1),
        ("uir", 512, 768, 5, 5, "relu", 2), *[("uir", 512, 2048, 5, 5, "relu", 1)] * 3,
        ("uir", 512, 2048, 5, 0, "relu", 1), ("uir", 512, 2048, 5, 3, "relu", 1), ("uir", 512, 2048, 5, 0, "relu", 1),
        ("uir", 512, 2048, 5, 0, "relu", 1), ("uir", 512, 2048, 5, 3, "relu", 1), ("uir", 512, 2048, 5, 5, "relu", 1),
        *[("uir", 512, 2048, 5, 0, "relu", 1)] * 3,
        ("cn", 960, 1, "relu", 1),
    ],
    "hybrid_medium": [
        ("er", 48, 128, 3, "relu", 2),
        ("uir", 80, 192, 3, 5, "relu", 2), ("uir", 80, 160, 3, 3, "relu", 1),
        ("uir", 160, 480, 3, 5, "relu", 2), ("uir", 160, 320, 0, 0, "relu", 1), ("uir", 160, 640, 3, 3, "relu", 1),
        ("uir", 160, 640, 3, 5, "relu", 1),
        ("mqa", 160, 64, 3, 4, 2, "relu", 1), ("uir", 160, 640, 3, 3, "relu", 1),
        ("mqa", 160, 64, 3, 4, 2, "relu", 1), ("uir", 160, 640, 3, 0, "relu", 1),
        ("mqa", 160, 64, 3, 4, 2, "relu", 1), ("uir", 160, 640, 3, 3, "relu", 1),
        ("mqa", 160, 64, 3, 4, 2, "relu", 1), ("uir", 160, 640, 3, 0, "relu", 1),
        ("uir", 256, 960, 5, 5, "relu", 2), ("uir", 256, 1024, 5, 5, "relu", 1), ("uir", 256, 1024, 3, 5, "relu", 1),
        ("uir", 256, 1024, 3, 5, "relu", 1), ("uir", 256, 512, 0, 0, "relu", 1), ("uir", 256, 512, 3, 5, "relu", 1),
        ("uir", 256, 512, 0, 0, "relu", 1), ("uir", 256, 1024, 0, 0, "relu", 1),
        ("mqa", 256, 64, 3, 4, 1, "relu", 1), ("uir", 256, 1024, 3, 0, "relu", 1),
        ("mqa", 256, 64, 3, 4, 1, "relu", 1), ("uir", 256, 1024, 5, 5, "relu", 1),
        ("mqa", 256, 64, 3, 4, 1, "relu", 1), ("uir", 256, 1024, 5, 0, "relu", 1),
        ("mqa", 256, 64, 3, 4, 1, "relu", 1), ("uir", 256, 1024, 5, 0, "relu", 1),
        ("cn", 960, 1, "relu", 1),
    ],
    "hybrid_large": [
        ("er", 48, 96, 3, "gelu", 2),
        ("uir", 96, 192, 3, 5, "gelu", 2), ("uir", 96, 384, 3, 3, "gelu", 1),
        ("uir", 192, 384, 3, 5, "gelu", 2), ("uir", 192, 768, 3, 3, "gelu", 1), ("uir", 192, 768, 3, 3, "gelu", 1),
        ("uir", 192, 768, 3, 3, "gelu", 1), ("uir", 192, 768, 3, 5, "gelu", 1), ("uir", 192, 768, 5, 3, "gelu", 1),
        ("uir", 192, 768, 5, 3, "gelu", 1),
        *[("mqa", 192, 48, 3, 8, 2, "gelu", 1), ("uir", 192, 768, 5, 3, "gelu", 1)] * 3,
        ("mqa", 192, 48, 3, 8, 2, "gelu", 1), ("uir", 192, 768, 3, 0, "gelu", 1),
        ("uir", 512, 768, 5, 5, "gelu", 2), *[("uir", 512, 2048, 5, 5, "gelu", 1)] * 3,
        ("uir", 512, 2048, 5, 0, "gelu", 1), ("uir", 512, 2048, 5, 3, "gelu", 1), ("uir", 512, 2048, 5, 0, "gelu", 1),
        ("uir", 512, 2048, 5, 0, "gelu", 1), ("uir", 512, 2048, 5, 3, "gelu", 1), ("uir", 512, 2048, 5, 5, "gelu", 1),
        *[("mqa", 512, 64, 3, 8, 1, "gelu", 1), ("uir", 512, 2048, 5, 0, "gelu", 1)] * 4,
        ("cn", 960, 1, "gelu", 1),
    ],
}


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
             act: Optional[str] = None) -> ConvBNAct:
    """Conv -> BN (no weight decay on BN) -> optional activation."""
    return ConvBNAct(in_channels, out_channels, kernel_size, stride, groups=groups, act=act, bn_no_decay=True)


def _residual_drop(rate: float) -> nn.Layer:
    return DropPath(rate) if rate else nn.Identity()


class LayerScale2D(nn.Layer):
    """Per-channel learnable scale ``gamma`` (initialised small) on a residual branch."""

    def __init__(self, channels: int, init_value: float):
        super().__init__()
        self.gamma = self.create_parameter([channels], default_initializer=nn.initializer.Constant(init_value))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x * self.gamma.reshape([1, -1, 1, 1])


def conv_block(in_channels: int, out_channels: int, kernel_size: int, act: str, stride: int,
               drop_path_rate: float) -> ConvBNAct:
    """A plain conv-BN-act block.  PaddleClas gives it stochastic depth on its whole output (it
    has no residual), so a ``drop_path`` layer follows when the rate is positive."""
    block = _conv_bn(in_channels, out_channels, kernel_size, stride, act=act)
    if drop_path_rate > 0:
        block.add_sublayer("drop_path", DropPath(drop_path_rate))  # appended to the sequence
    return block


class EdgeResidual(nn.Layer):
    """Fused expansion: kxk conv (expand, stride) -> 1x1 linear conv, plus the input when shapes allow."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, kernel_size: int, act: str,
                 stride: int, drop_path_rate: float):
        super().__init__()
        self.shortcut = stride == 1 and in_channels == out_channels
        self.conv_exp = _conv_bn(in_channels, mid_channels, kernel_size, stride, act=act)
        self.conv_pwl = _conv_bn(mid_channels, out_channels, 1)
        self.drop_path = _residual_drop(drop_path_rate)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self.conv_pwl(self.conv_exp(x))
        return x + self.drop_path(y) if self.shortcut else y


class UniversalInvertedResidual(nn.Layer):
    """[kxk depthwise] -> 1x1 expand -> [kxk depthwise, stride] -> 1x1 project -> [layer scale],
    plus the input when shapes allow.  A kernel of 0 leaves that depthwise conv out."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, start_kernel: int, mid_kernel: int,
                 act: str, stride: int, drop_path_rate: float, layer_scale: float):
        super().__init__()
        self.shortcut = stride == 1 and in_channels == out_channels
        self.dw_start = _conv_bn(in_channels, in_channels, start_kernel, groups=in_channels) \
            if start_kernel else nn.Identity()
        self.pw_exp = _conv_bn(in_channels, mid_channels, 1, act=act)
        self.dw_mid = _conv_bn(mid_channels, mid_channels, mid_kernel, stride, groups=mid_channels, act=act) \
            if mid_kernel else nn.Identity()
        self.pw_proj = _conv_bn(mid_channels, out_channels, 1)
        self.layer_scale = LayerScale2D(out_channels, layer_scale) if layer_scale > 0 else None
        self.drop_path = _residual_drop(drop_path_rate)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self.pw_proj(self.dw_mid(self.pw_exp(self.dw_start(x))))
        if self.layer_scale is not None:
            y = self.layer_scale(y)
        return x + self.drop_path(y) if self.shortcut else y


class MobileAttention(nn.Layer):
    """Mobile multi-query attention on BN-normalised features: ``heads`` query heads share one
    key and one value head, computed on a (``kv_stride``) downsampled map; 1x1 output projection,
    [layer scale], plus the input when shapes allow."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, heads: int, query_dim: int,
                 kv_dim: int, kv_stride: int, stride: int, drop_path_rate: float, layer_scale: float):
        super().__init__()
        self.shortcut = stride == 1 and in_channels == out_channels
        self.heads, self.query_dim, self.kv_dim = heads, query_dim, kv_dim
        self.scale = query_dim ** -0.5  # PaddleClas scales by the full query width
        self.norm = nn.BatchNorm2D(in_channels, weight_attr=param_attr(no_decay=True),
                                   bias_attr=param_attr(no_decay=True))
        self.query_proj = nn.Conv2D(in_channels, query_dim, 1, bias_attr=False)
        self.kv_stride = kv_stride
        if kv_stride > 1:
            self.key_down_proj = _conv_bn(in_channels, in_channels, kernel_size, kv_stride, groups=in_channels)
            self.value_down_proj = _conv_bn(in_channels, in_channels, kernel_size, kv_stride, groups=in_channels)
        self.key_proj = nn.Conv2D(in_channels, kv_dim, 1, bias_attr=False)
        self.value_proj = nn.Conv2D(in_channels, kv_dim, 1, bias_attr=False)
        self.proj = nn.Conv2D(query_dim, out_channels, 1, bias_attr=False)
        self.softmax = nn.Softmax(-1)
        self.layer_scale = LayerScale2D(out_channels, layer_scale) if layer_scale > 0 else None
        self.drop_path = _residual_drop(drop_path_rate)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self.norm(x)
        _, _, height, width = y.shape
        # q: [B, heads, HW, d]; k^T: [B, 1, kv, HW']; v: [B, 1, HW', kv] (one shared key/value head)
        q = self.query_proj(y).reshape([0, self.heads, self.query_dim // self.heads, -1]).transpose([0, 1, 3, 2])
        k_in, v_in = (self.key_down_proj(y), self.value_down_proj(y)) if self.kv_stride > 1 else (y, y)
        k = self.key_proj(k_in).reshape([0, 1, self.kv_dim, -1])
        v = self.value_proj(v_in).reshape([0, 1, self.kv_dim, -1]).transpose([0, 1, 3, 2])
        attn = self.softmax((q * self.scale) @ k) @ v  # [B, heads, HW, kv]
        # channels ordered head-major, as PaddleClas lays them out
        attn = attn.transpose([0, 1, 3, 2]).reshape([0, self.heads * self.kv_dim, height, width])
        out = self.proj(attn)
        if self.layer_scale is not None:
            out = self.layer_scale(out)
        return x + self.drop_path(out) if self.shortcut else out


class MobileNetV4(ArchModel):
    """MobileNetV4; the registered subclasses fix ``config`` and its stem width, activation and
    layer scale.

    Args:
        class_num: classifier width.
        class_expand: channels of the 1x1 ``conv_head`` after pooling (the features the classifier reads).
        drop_path_rate: stochastic depth, rising linearly over the blocks (block i: rate * i / blocks).
        drop_rate: accepted for PaddleClas configs; not applied, as in PaddleClas (see the module docstring).
        use_fused_attn: only False (PaddleClas's fused path scales attention differently from the
            unfused one that its configs use).
    """
    config: str = ""
    inplanes: int = 32
    act: str = "relu"
    layer_scale: float = 0.0

    def __init__(self, class_num: int = 1000, class_expand: int = 1280, drop_path_rate: float = 0.0,
                 drop_rate: float = 0.0, use_fused_attn: bool = False):
        super().__init__()
        class_num = check_class_num(class_num)
        class_expand = check_positive_int(class_expand, "class_expand")
        drop_path_rate = check_probability(drop_path_rate, "drop_path_rate")
        if check_probability(drop_rate, "drop_rate") > 0:
            logger.warning("%s: drop_rate=%s is not applied (PaddleClas's MobileNetV4 never calls its dropout "
                           "layer; ppfreeze keeps that behaviour so its recipes and weights match)",
                           type(self).__name__, drop_rate)
        if use_fused_attn is not False:
            raise ConfigError("use_fused_attn", f"only false is supported, got {use_fused_attn!r}",
                              "PaddleClas's fused attention uses another scale than its unfused path; "
                              "remove use_fused_attn")
        cfg = NET_CONFIG[self.config]

        self.conv_stem = _conv_bn(3, make_divisible(self.inplanes), 3, 2, act=self.act)
        blocks: List[nn.Layer] = []
        in_channels = make_divisible(self.inplanes)
        for i, spec in enumerate(cfg):
            blocks.append(self._block(spec, in_channels, drop_path_rate * i / len(cfg)))
            in_channels = make_divisible(spec[1])
        self.blocks = nn.Sequential(*blocks)
        self.global_pool = nn.AdaptiveAvgPool2D(1)
        self.conv_head = _conv_bn(in_channels, class_expand, 1, act=cfg[-1][-2])
        self.flatten = nn.Flatten(start_axis=1, stop_axis=-1)
        self.classifier = nn.Linear(class_expand, class_num)

        self.class_num = class_num
        self.num_features = class_expand
        names = [f"blocks.{i}" for i in range(len(cfg))]
        groups = split_at_downsampling(names[:-1], [spec[-1] for spec in cfg[:-1]]) + [names[-1:]]
        self.stages = stage_map(["conv_stem"], groups, ["global_pool", "conv_head", "flatten", "classifier"])

    def _block(self, spec: tuple, in_channels: int, drop_path_rate: float) -> nn.Layer:
        kind = spec[0]
        if kind == "cn":
            _, out, k, act, s = spec
            return conv_block(in_channels, make_divisible(out), k, act, s, drop_path_rate)
        if kind == "er":
            _, out, mid, k, act, s = spec
            return EdgeResidual(in_channels, make_divisible(mid), make_divisible(out), k, act, s, drop_path_rate)
        if kind == "uir":
            _, out, mid, k_start, k_mid, act, s = spec
            return UniversalInvertedResidual(in_channels, make_divisible(mid), make_divisible(out), k_start, k_mid,
                                             act, s, drop_path_rate, self.layer_scale)
        _, out, kv_dim, k, heads, kv_stride, _act, s = spec  # "mqa"
        return MobileAttention(in_channels, make_divisible(out), k, heads, make_divisible(heads * kv_dim),
                               make_divisible(kv_dim), kv_stride, s, drop_path_rate, self.layer_scale)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.conv_stem(x)
        x = self.blocks(x)
        x = self.global_pool(x)
        x = self.conv_head(x)
        x = self.flatten(x)
        return self.classifier(x)


@MODELS.register
class MobileNetV4_conv_small(MobileNetV4):
    config = "conv_small"


@MODELS.register
class MobileNetV4_conv_medium(MobileNetV4):
    config = "conv_medium"


@MODELS.register
class MobileNetV4_conv_large(MobileNetV4):
    config, inplanes = "conv_large", 24


@MODELS.register
class MobileNetV4_hybrid_medium(MobileNetV4):
    config, layer_scale = "hybrid_medium", 1e-5


@MODELS.register
class MobileNetV4_hybrid_large(MobileNetV4):
    config, inplanes, act, layer_scale = "hybrid_large", 24, "gelu", 1e-5
