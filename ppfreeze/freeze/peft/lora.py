"""LoRA (Hu et al. 2021, arXiv:2106.09685) on Linear and Conv2D layers, without renaming anything.

An adapted layer keeps its class's behaviour and its parameters (``qkv.weight``, ``qkv.bias``)
and gains two more, ``qkv.lora_A`` and ``qkv.lora_B``::

    Linear  (weight [in, out]):      y = x W + b + s * dropout(x) A B            A [in, r], B [r, out]
    Conv2D  (weight [out, in, k, k]): y = conv(x, W) + b + s * conv1x1(conv(dropout(x), A), B)
                                                                  A [r, in, k, k], B [out, r, 1, 1]

with ``s = alpha / r``. ``A`` starts Kaiming-uniform and ``B`` at zero, so an adapted model starts
out computing exactly what the base model computes. The layer is upgraded in place (its class
becomes the LoRA subclass of its own class), so every key, every reference to it and
``isinstance(layer, nn.Linear)`` stay as they were.

``fused()`` returns the plain layer with ``W + s * (A B)`` merged in: the exporter replaces every
layer that has ``fused()`` (``ppfreeze.arch.base.reparameterized_copy``), so an exported model has
the base architecture's structure, parameter count and cost.
"""
from __future__ import annotations

import math
from typing import List, Tuple

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

ADAPTER_PARAMS = ("lora_A", "lora_B")


def _kaiming_uniform() -> nn.initializer.Initializer:
    # the initialisation nn.Linear uses in PyTorch and LoRA's reference code: a = sqrt(5)
    return nn.initializer.KaimingUniform(negative_slope=math.sqrt(5), nonlinearity="leaky_relu")


class LoRAMixin:
    """What LoRA adds to a Linear or Conv2D layer (see the module docstring)."""

    rank: int
    scale: float
    lora_dropout: float

    def _attach(self, rank: int, scale: float, dropout: float, a_shape: List[int], b_shape: List[int]) -> None:
        self.rank, self.scale, self.lora_dropout = rank, scale, dropout
        self.lora_A = self.create_parameter(a_shape, default_initializer=_kaiming_uniform())
        self.lora_B = self.create_parameter(b_shape, default_initializer=nn.initializer.Constant(0.0))

    def _dropped(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.dropout(x, self.lora_dropout, training=self.training) if self.lora_dropout > 0 else x

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lora_rank={self.rank}, lora_scale={self.scale:g}"


class LoRALinear(LoRAMixin, nn.Linear):
    """An ``nn.Linear`` with a LoRA branch (upgrade one with :func:`add_lora`)."""

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        base = F.linear(x, self.weight, self.bias)
        return base + paddle.matmul(paddle.matmul(self._dropped(x), self.lora_A), self.lora_B) * self.scale

    def merged_weight(self) -> paddle.Tensor:
        """``W + s * A B``: the weight of the equivalent plain Linear."""
        return self.weight + paddle.matmul(self.lora_A, self.lora_B) * self.scale

    def fused(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing the same function (LoRA merged into the weight)."""
        in_features, out_features = self.weight.shape
        plain = nn.Linear(in_features, out_features, bias_attr=None if self.bias is not None else False)
        with paddle.no_grad():
            plain.weight.set_value(self.merged_weight())
            if self.bias is not None:
                plain.bias.set_value(self.bias)
        return plain


class LoRAConv2D(LoRAMixin, nn.Conv2D):
    """An ``nn.Conv2D`` (groups 1, NCHW, zero padding) with a LoRA branch: a k x k convolution
    to ``rank`` channels with the base's stride, padding and dilation, then a 1 x 1 one."""

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        base = super().forward(x)
        low = F.conv2d(self._dropped(x), self.lora_A, stride=self._stride, padding=self._padding,
                       dilation=self._dilation, data_format=self._data_format)
        return base + F.conv2d(low, self.lora_B, data_format=self._data_format) * self.scale

    def merged_weight(self) -> paddle.Tensor:
        """``W + s * B A`` as one k x k kernel: the weight of the equivalent plain Conv2D."""
        out_channels, rank = self.lora_B.shape[0], self.lora_B.shape[1]
        delta = paddle.matmul(self.lora_B.reshape([out_channels, rank]), self.lora_A.reshape([rank, -1]))
        return self.weight + delta.reshape(self.weight.shape) * self.scale

    def fused(self) -> nn.Conv2D:
        """A plain ``nn.Conv2D`` computing the same function (LoRA merged into the kernel)."""
        out_channels, in_channels, kh, kw = self.weight.shape
        plain = nn.Conv2D(in_channels, out_channels, [kh, kw], stride=self._stride, padding=self._padding,
                          dilation=self._dilation, groups=1, bias_attr=None if self.bias is not None else False,
                          data_format=self._data_format)
        with paddle.no_grad():
            plain.weight.set_value(self.merged_weight())
            if self.bias is not None:
                plain.bias.set_value(self.bias)
        return plain


def why_not_adaptable(layer: nn.Layer) -> str:
    """Why LoRA cannot adapt ``layer`` ('' when it can)."""
    if isinstance(layer, LoRAMixin):
        return ""
    if type(layer) is nn.Linear:
        return ""
    if type(layer) is nn.Conv2D:
        if layer._groups != 1:
            return f"a grouped convolution (groups={layer._groups})"
        if layer._data_format != "NCHW":
            return f"data_format {layer._data_format}"
        if layer._padding_mode != "zeros":
            return f"padding_mode {layer._padding_mode}"
        return ""
    return f"a {type(layer).__name__} (LoRA adapts nn.Linear and nn.Conv2D)"


def add_lora(layer: nn.Layer, rank: int, scale: float, dropout: float) -> Tuple[str, ...]:
    """Upgrade ``layer`` (an ``nn.Linear`` or ``nn.Conv2D``) in place; returns the added parameter names.

    An already adapted layer is left as it is (building a second plan on the same model).
    """
    if isinstance(layer, LoRAMixin):
        return ADAPTER_PARAMS
    reason = why_not_adaptable(layer)
    if reason:
        raise ValueError(f"cannot add LoRA to {reason}")
    if isinstance(layer, nn.Linear):
        in_features, out_features = layer.weight.shape
        layer.__class__ = LoRALinear
        layer._attach(rank, scale, dropout, [in_features, rank], [rank, out_features])
    else:
        out_channels, in_channels, kh, kw = layer.weight.shape
        layer.__class__ = LoRAConv2D
        layer._attach(rank, scale, dropout, [rank, in_channels, kh, kw], [out_channels, rank, 1, 1])
    return ADAPTER_PARAMS
