"""PaddleClas's ResNet50 variants (``variant_models/resnet_variant.py``), used by re-id and
product-retrieval configs.  Each is our :class:`ResNet50` with one change, so keys and
stages are ResNet50's (plus the MetaBIN parameters of ``ResNet50_metabin``):

    ResNet50_last_stage_stride1    stage4 keeps the resolution (stride_list[4] = 1): 16x16 maps at 256 px
    ResNet50_adaptive_max_pool2d   global max pooling instead of average pooling (still named avg_pool)
    ResNet50_metabin               last_stage_stride1 with every BN replaced by MetaBIN (BN and
                                   instance norm mixed by a learned per-channel gate)
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence

import paddle
import paddle.nn as nn
from paddle.nn.initializer import Constant

from ...config.errors import ConfigError
from ...config.expr import to_number
from ..registry import MODELS
from .resnet import ConvBNLayer, ResNet50

logger = logging.getLogger("ppfreeze")


@MODELS.register
class ResNet50_last_stage_stride1(ResNet50):
    """ResNet50 whose stage4 is not downsampled (its first block's conv1 and shortcut use stride 1)."""

    def _strides(self, values: Optional[Sequence]) -> List:
        strides = super()._strides(values)
        if strides[4] != 1:
            if values is not None:
                logger.info("%s: stride_list[4] = %s is replaced by 1 (the point of this variant)",
                            type(self).__name__, strides[4])
            strides[4] = 1
        return strides


@MODELS.register
class ResNet50_adaptive_max_pool2d(ResNet50):
    """ResNet50 with global max pooling; the layer keeps PaddleClas's name ``avg_pool``."""

    def _global_pool(self, data_format: str) -> nn.Layer:
        if data_format != "NCHW":
            # paddle's AdaptiveMaxPool2D pools NCHW only (PaddleClas's variant has the same limit)
            raise ConfigError("data_format", f"{type(self).__name__} runs NCHW only, got {data_format!r}",
                              "remove data_format")
        return nn.AdaptiveMaxPool2D(1)


class BINGate(nn.Layer):
    """Per-channel weight of the batch-normalised branch (initialised to 1: pure BN)."""

    def __init__(self, num_features: int):
        super().__init__()
        self.gate = self.create_parameter([num_features], default_initializer=Constant(1.0))

    def forward(self) -> paddle.Tensor:
        return self.gate

    def clip_gate(self) -> None:
        """Project the gate back into [0, 1] (MetaBIN's training loop does this after each step)."""
        self.gate.set_value(self.gate.clip(0.0, 1.0))


class MetaBIN(nn.Layer):
    """Batch-instance normalisation (Choi et al. 2021, MetaBIN): ``gate * BN(x) + (1 - gate) * IN(x)``.

    The BN branch is an ordinary ``BatchNorm2D`` (batch statistics in training, running statistics
    in eval), so the Freeze section's BN policies apply to it as to any BN.
    """

    def __init__(self, num_features: int):
        super().__init__()
        self.batch_norm = nn.BatchNorm2D(num_features)
        self.instance_norm = nn.InstanceNorm2D(num_features)
        self.gate = BINGate(num_features)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        gate = self.gate().reshape([1, -1, 1, 1])
        return self.batch_norm(x) * gate + self.instance_norm(x) * (1.0 - gate)


@MODELS.register
class ResNet50_metabin(ResNet50_last_stage_stride1):
    """ResNet50_last_stage_stride1 with MetaBIN in place of every BN.

    Args:
        bias_lr_factor: learning-rate multiplier *set* (not multiplied) on every parameter whose
            name contains "bias" (BN/IN shifts and the fc bias), as PaddleClas does.
        **kwargs: ResNet50's arguments.

    PaddleClas trains this model with its own meta-learning loop (``train_mode: metabin``: an
    inner gate update, BN "hold" mode, ``clip_gate``); ppfreeze trains it like any model.
    """

    def __init__(self, bias_lr_factor: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if self.data_format != "NCHW":
            raise ConfigError("data_format", f"{type(self).__name__} runs NCHW only, got {self.data_format!r}",
                              "remove data_format")
        for layer in self.sublayers():
            if isinstance(layer, ConvBNLayer):
                layer.bn = MetaBIN(layer.bn.weight.shape[0])  # same slot: key order is kept
        factor = float(to_number(bias_lr_factor, "bias_lr_factor"))
        for name, param in self.named_parameters():
            if "bias" in name:
                param.optimize_attr["learning_rate"] = factor

    def adapt_state_dict(self, state: Dict[str, Any]) -> Dict[str, Any]:
        """Map plain ResNet50 weights onto this model: PaddleClas builds ResNet50_metabin from a
        ResNet50 (``pretrained`` is ResNet50's file) and copies each BN into its MetaBIN's
        ``batch_norm``; a file with ``<conv>.bn.weight`` keys gets them renamed to
        ``<conv>.bn.batch_norm.weight`` (keys already in MetaBIN form are kept)."""
        own = set(self.state_dict())
        adapted = {}
        for key, value in state.items():
            prefix, _, leaf = key.rpartition(".")
            moved = f"{prefix}.batch_norm.{leaf}"
            adapted[moved if key not in own and moved in own else key] = value
        return adapted

    def clip_gates(self) -> None:
        """Clip every MetaBIN gate into [0, 1]."""
        for layer in self.sublayers():
            if isinstance(layer, BINGate):
                layer.clip_gate()
