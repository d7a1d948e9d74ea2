"""Forward multiply-adds of Conv2D, Linear and attention layers, measured with hooks on one dummy input.

Attention layers are recognised by their ``num_heads`` attribute and a ``[B, N, C]`` input
(ViT's ``Attention``, Swin's ``WindowAttention`` with windows folded into the batch): their
two matmuls (``q @ k^T`` and ``attn @ v``) cost ``2 * B * N * N * C`` multiply-adds on top of
the projections, which are Linear layers and counted as such.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import paddle

from .model_index import unwrap


def _conv_macs(layer: paddle.nn.Conv2D, output: paddle.Tensor) -> int:
    kh, kw = layer._kernel_size
    in_per_group = layer._in_channels // layer._groups
    return int(np.prod(output.shape)) * in_per_group * kh * kw


def _linear_macs(layer: paddle.nn.Linear, output: paddle.Tensor) -> int:
    in_features = layer.weight.shape[0]
    return int(np.prod(output.shape)) * in_features


def _attention_macs(layer: paddle.nn.Layer, inputs, output: paddle.Tensor) -> int:
    x = inputs[0] if isinstance(inputs, (tuple, list)) and inputs else inputs
    if not isinstance(x, paddle.Tensor) or x.ndim != 3:
        return 0
    batch, tokens, channels = x.shape
    return 2 * int(batch) * int(tokens) * int(tokens) * int(channels)


def count_macs(model: paddle.nn.Layer, image_shape: Sequence[int]) -> Dict[str, int]:
    """Sublayer name -> multiply-adds for one ``[C, H, W]`` image (batch 1).

    Runs in eval mode under ``no_grad`` (BN statistics do not move) and restores every
    sublayer's train/eval flag afterwards.
    """
    model = unwrap(model)
    macs: Dict[str, int] = {}
    handles = []
    for name, layer in model.named_sublayers():
        if isinstance(layer, paddle.nn.Conv2D):
            handles.append(layer.register_forward_post_hook(_recorder(name, macs, _conv_macs)))
        elif isinstance(layer, paddle.nn.Linear):
            handles.append(layer.register_forward_post_hook(_recorder(name, macs, _linear_macs)))
        elif isinstance(getattr(layer, "num_heads", None), int):
            handles.append(layer.register_forward_post_hook(_recorder(name, macs, _attention_macs)))
    modes = {layer: layer.training for layer in [model] + list(model.sublayers())}
    try:
        model.eval()
        with paddle.no_grad():
            model(paddle.zeros([1] + list(image_shape), dtype="float32"))
    finally:
        for handle in handles:
            handle.remove()
        for layer, training in modes.items():
            layer.training = training
    return macs


def _recorder(name: str, macs: Dict[str, int], counter):
    def hook(layer, inputs, output):
        if counter is _attention_macs:
            added = counter(layer, inputs, output)
        else:
            added = counter(layer, output[0] if isinstance(output, (tuple, list)) else output)
        macs[name] = macs.get(name, 0) + added
    return hook
