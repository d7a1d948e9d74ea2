"""ConvNeXt (Liu et al. 2022): a ResNet modernised with transformer design choices.

Parameter names follow PaddleClas's ``model_zoo/convnext.py``, so the published
``ConvNeXt_*_pretrained.pdparams`` load as-is:

    downsample_layers.0.0 (4x4 stride-4 conv), downsample_layers.0.1 (channels-first LayerNorm)
    downsample_layers.<i>.0 (channels-first LayerNorm), downsample_layers.<i>.1 (2x2 stride-2 conv)
    stages.<s>.<b> . gamma, dwconv, norm, pwconv1, pwconv2
    norm (LayerNorm of the pooled features), head (the classifier)

LayerNorm as PaddleClas has it: inside the blocks and at the end ``nn.LayerNorm`` over channels
last (epsilon 1e-6); around the downsampling convs a channels-first LayerNorm computed by hand
(biased variance over the channel axis, epsilon 1e-6 inside the square root).

Forward order interleaves the two lists: downsample_layers.0, stages.0, downsample_layers.1,
stages.1, ... -- PaddleClas registers all downsampling layers before all stages, so the forward
order (``stages`` metadata) is not the registration order here.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import paddle
import paddle.nn as nn
from paddle.nn.initializer import Constant, TruncatedNormal

from ...config.errors import ConfigError
from ...config.expr import to_number
from ..base import ArchModel
from ..registry import MODELS
from .common import (DropPath, StagesLayerList, check_class_num, check_probability, declare_stages, int_list,
                     param_attr)

INIT_STD = 0.02


def _weight_attr(scale: float = 1.0) -> Any:
    """Truncated normal (std 0.02) times ``scale``; the distribution is symmetric, so |scale| does it."""
    std = INIT_STD * abs(scale)
    return param_attr(initializer=TruncatedNormal(std=std) if std > 0 else Constant(0.0))


def _zero_attr() -> Any:
    return param_attr(initializer=Constant(0.0))


class ChannelsFirstLayerNorm(nn.Layer):
    """LayerNorm over the channel axis of an NCHW tensor."""

    def __init__(self, channels: int, epsilon: float = 1e-6):
        super().__init__()
        self.weight = self.create_parameter([channels], default_initializer=Constant(1.0))
        self.bias = self.create_parameter([channels], default_initializer=Constant(0.0))
        self.epsilon = epsilon

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / paddle.sqrt(var + self.epsilon)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class Block(nn.Layer):
    """7x7 depthwise conv -> LayerNorm -> Linear (4x) -> GELU -> Linear -> layer scale ``gamma``,
    on channels-last features, plus the residual (through stochastic depth)."""

    def __init__(self, dim: int, drop_path: float = 0.0, layer_scale_init_value: float = 1e-6):
        super().__init__()
        self.dwconv = nn.Conv2D(dim, dim, 7, padding=3, groups=dim, weight_attr=_weight_attr(), bias_attr=_zero_attr())
        self.norm = nn.LayerNorm(dim, epsilon=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim, weight_attr=_weight_attr(), bias_attr=_zero_attr())
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim, weight_attr=_weight_attr(), bias_attr=_zero_attr())
        self.gamma = self.create_parameter([dim], default_initializer=Constant(layer_scale_init_value)) \
            if layer_scale_init_value > 0 else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        residual = x
        x = self.dwconv(x).transpose([0, 2, 3, 1])  # NCHW -> NHWC
        x = self.pwconv2(self.act(self.pwconv1(self.norm(x))))
        if self.gamma is not None:
            x = self.gamma * x
        return residual + self.drop_path(x.transpose([0, 3, 1, 2]))


class ConvNeXt(StagesLayerList, ArchModel):
    """ConvNeXt; subclasses fix the defaults of ``depths`` and ``dims``.

    Args:
        class_num: classifier width.
        in_chans: channels of the input image.
        depths: blocks per stage (4 integers).
        dims: channels per stage (4 integers).
        drop_path_rate: stochastic depth of the last block (rising linearly from 0 over the blocks).
        layer_scale_init_value: initial layer scale ``gamma``; 0 disables it (no ``gamma`` keys).
        head_init_scale: scales the classifier's initial weights and biases.
    """
    default_depths: Sequence[int] = (3, 3, 9, 3)
    default_dims: Sequence[int] = (96, 192, 384, 768)

    def __init__(self, class_num: int = 1000, in_chans: int = 3, depths: Optional[Sequence[int]] = None,
                 dims: Optional[Sequence[int]] = None, drop_path_rate: Any = 0.0,
                 layer_scale_init_value: Any = 1e-6, head_init_scale: Any = 1.0):
        super().__init__()
        class_num = check_class_num(class_num)
        in_chans = check_class_num(in_chans, "in_chans")
        depths = int_list(list(self.default_depths) if depths is None else depths, 4, "depths")
        dims = int_list(list(self.default_dims) if dims is None else dims, 4, "dims")
        drop_path_rate = check_probability(drop_path_rate, "drop_path_rate")
        layer_scale = float(to_number(layer_scale_init_value, "layer_scale_init_value"))
        head_scale = float(to_number(head_init_scale, "head_init_scale"))
        if layer_scale < 0:
            raise ConfigError("layer_scale_init_value", f"expected a number >= 0, got {layer_scale_init_value!r}")

        stem = nn.Sequential(nn.Conv2D(in_chans, dims[0], 4, stride=4, weight_attr=_weight_attr(),
                                       bias_attr=_zero_attr()),
                             ChannelsFirstLayerNorm(dims[0]))
        self.downsample_layers = nn.LayerList([stem] + [
            nn.Sequential(ChannelsFirstLayerNorm(dims[i]),
                          nn.Conv2D(dims[i], dims[i + 1], 2, stride=2, weight_attr=_weight_attr(),
                                    bias_attr=_zero_attr()))
            for i in range(3)])
        rates = np.linspace(0, drop_path_rate, sum(depths)).tolist()
        starts = np.cumsum([0] + depths).tolist()
        self.add_sublayer("stages", nn.LayerList([
            nn.Sequential(*[Block(dims[i], rates[starts[i] + j], layer_scale) for j in range(depths[i])])
            for i in range(4)]))
        self.norm = nn.LayerNorm(dims[-1], epsilon=1e-6)
        # PaddleClas multiplies the initial head by head_init_scale; scaling the init's std is the same
        self.head = nn.Linear(dims[-1], class_num, weight_attr=_weight_attr(head_scale), bias_attr=_zero_attr())

        self.class_num = class_num
        self.num_features = dims[-1]
        declare_stages(self, self._stages())

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        for downsample, stage in zip(self.downsample_layers, self.stage_layers):
            x = stage(downsample(x))
        x = self.norm(x.mean([-2, -1]))  # global average pool, then LayerNorm
        return self.head(x)

    @staticmethod
    def _stages() -> Dict[str, List[str]]:
        """stem (the 4x4 patchify conv + norm), stage1..4 (downsampling + blocks), head."""
        stages: Dict[str, List[str]] = OrderedDict(stem=["downsample_layers.0"], stage1=["stages.0"])
        for i in range(1, 4):
            stages[f"stage{i + 1}"] = [f"downsample_layers.{i}", f"stages.{i}"]
        stages["head"] = ["norm", "head"]
        return stages


@MODELS.register
class ConvNeXt_tiny(ConvNeXt):
    default_depths, default_dims = (3, 3, 9, 3), (96, 192, 384, 768)


@MODELS.register
class ConvNeXt_small(ConvNeXt):
    default_depths, default_dims = (3, 3, 27, 3), (96, 192, 384, 768)


@MODELS.register
class ConvNeXt_base_224(ConvNeXt):
    default_depths, default_dims = (3, 3, 27, 3), (128, 256, 512, 1024)


@MODELS.register
class ConvNeXt_base_384(ConvNeXt):
    default_depths, default_dims = (3, 3, 27, 3), (128, 256, 512, 1024)


@MODELS.register
class ConvNeXt_large_224(ConvNeXt):
    default_depths, default_dims = (3, 3, 27, 3), (192, 384, 768, 1536)


@MODELS.register
class ConvNeXt_large_384(ConvNeXt):
    default_depths, default_dims = (3, 3, 27, 3), (192, 384, 768, 1536)
