"""Forward multiply-adds of Conv2D and Linear layers, measured with hooks on one dummy input."""
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
        macs[name] = macs.get(name, 0) + counter(layer, output)
    return hook
