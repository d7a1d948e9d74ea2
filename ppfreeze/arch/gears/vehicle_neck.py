"""``VehicleNeck``: a convolution on the pooled backbone output, flattened (PaddleClas's vehicle / logo
re-id configs: ``BackboneStopLayer: avg_pool``, then ``in_channels -> out_channels``)."""
from __future__ import annotations

from typing import Any

import paddle
import paddle.nn as nn

from ...config.errors import ConfigError
from .param_attr import param_attr_from_config
from .registry import GEARS


@GEARS.register
class VehicleNeck(nn.Layer):
    """``Conv2D(in_channels, out_channels, kernel_size, ...)`` then ``Flatten``.

    State dict: ``conv.weight`` ``[out, in / groups, k, k]``, ``conv.bias`` (PaddleClas's keys).
    The arguments are ``paddle.nn.Conv2D``'s. ``weight_attr`` / ``bias_attr`` take PaddleClas's
    parameter-attribute mappings; PaddleClas's class applies ``weight_attr`` to the bias as well
    and ignores ``bias_attr`` (none of its configs sets either), here each applies to its own
    parameter.
    """
    needs_label = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 padding: int = 0, dilation: int = 1, groups: int = 1, padding_mode: str = "zeros",
                 weight_attr: Any = None, bias_attr: Any = None, data_format: str = "NCHW"):
        super().__init__()
        if data_format != "NCHW":
            raise ConfigError("data_format", f"only NCHW is supported (the backbones output NCHW), got {data_format!r}")
        self.num_features = int(out_channels)
        self.conv = nn.Conv2D(int(in_channels), int(out_channels), kernel_size, stride=stride, padding=padding,
                              dilation=dilation, groups=groups, padding_mode=padding_mode,
                              weight_attr=param_attr_from_config(weight_attr, "weight_attr"),
                              bias_attr=param_attr_from_config(bias_attr, "bias_attr"))
        self.flatten = nn.Flatten()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if x.ndim == 2:   # a backbone cut after its flatten: a 1 x 1 map
            x = x.reshape([x.shape[0], x.shape[1], 1, 1])
        return self.flatten(self.conv(x))
