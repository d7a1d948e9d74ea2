"""VGG 11/13/16/19 (Simonyan & Zisserman 2014), PaddleClas's ``legendary_models/vgg.py`` layout,
and the ``VGG19Sigmoid`` variant (``variant_models/vgg_variant.py``).

Parameter names follow the published ``VGG*_pretrained.pdparams``:

    conv_block_<1..5>.conv<1..4>.weight      3x3 convs, no bias, no BN
    fc1 / fc2 / fc3 .{weight,bias}           VGG19Sigmoid: fc2.origin_layer.{weight,bias}

Forward: conv_block_1..5 (convs + ReLU, 2x2 max pool) -> flatten -> fc1 -> ReLU -> dropout
-> fc2 -> ReLU -> dropout -> fc3.  fc1 reads a 7x7x512 map, so the input is 224 px (any size
from 224 to 255 gives the same 7x7).  The dropout is ``downscale_in_infer``: evaluation scales
by 0.5, as PaddleClas does.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List

import paddle
import paddle.nn as nn

from ...config.errors import ConfigError
from ..base import ArchModel
from ..registry import MODELS
from .common import check_class_num

# depth -> convs in conv_block_1..5
DEPTHS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
BLOCK_WIDTHS = (64, 128, 256, 512, 512)


class ConvBlock(nn.Layer):
    """``num_convs`` 3x3 convs (no bias), each followed by ReLU, then a 2x2 max pool."""

    def __init__(self, in_channels: int, out_channels: int, num_convs: int):
        super().__init__()
        self.num_convs = num_convs
        for i in range(1, num_convs + 1):
            setattr(self, f"conv{i}", nn.Conv2D(in_channels if i == 1 else out_channels, out_channels, 3,
                                                padding=1, bias_attr=False))
        self.max_pool = nn.MaxPool2D(kernel_size=2, stride=2, padding=0)
        self.relu = nn.ReLU()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        for i in range(1, self.num_convs + 1):
            x = self.relu(getattr(self, f"conv{i}")(x))
        return self.max_pool(x)


class SigmoidSuffix(nn.Layer):
    """A layer followed by a sigmoid (``origin_layer`` keeps the wrapped layer's keys)."""

    def __init__(self, origin_layer: nn.Layer):
        super().__init__()
        self.origin_layer = origin_layer
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.sigmoid(self.origin_layer(x))


class VGGNet(ArchModel):
    """VGG; subclasses fix ``depth``.

    Args:
        class_num: classifier width.
        stop_grad_layers: PaddleClas's way of freezing the first N conv blocks (``trainable =
            False``); only 0 is accepted: freeze with ``Freeze: {until: conv_block_N}`` instead.
    """
    depth: int = 11
    input_size = 224
    sigmoid_fc2: bool = False

    def __init__(self, class_num: int = 1000, stop_grad_layers: int = 0):
        super().__init__()
        class_num = check_class_num(class_num)
        if stop_grad_layers:
            raise ConfigError("stop_grad_layers", f"ppfreeze freezes layers in the Freeze section, got "
                              f"stop_grad_layers: {stop_grad_layers!r}",
                              f"remove it and write 'Freeze: {{until: conv_block_{stop_grad_layers}}}'")
        in_channels = 3
        for n, (num_convs, width) in enumerate(zip(DEPTHS[self.depth], BLOCK_WIDTHS), 1):
            setattr(self, f"conv_block_{n}", ConvBlock(in_channels, width, num_convs))
            in_channels = width
        self.flatten = nn.Flatten(start_axis=1, stop_axis=-1)
        self.fc1 = nn.Linear(7 * 7 * 512, 4096)
        self.relu = nn.ReLU()
        self.drop = nn.Dropout(p=0.5, mode="downscale_in_infer")
        fc2 = nn.Linear(4096, 4096)
        self.fc2 = SigmoidSuffix(fc2) if self.sigmoid_fc2 else fc2
        self.fc3 = nn.Linear(4096, class_num)

        self.class_num = class_num
        self.num_features = 4096
        self.stages: Dict[str, List[str]] = OrderedDict(
            stem=["conv_block_1"], stage1=["conv_block_2"], stage2=["conv_block_3"], stage3=["conv_block_4"],
            stage4=["conv_block_5"], head=["flatten", "fc1", "relu", "drop", "fc2", "fc3"])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        for n in range(1, 6):
            x = getattr(self, f"conv_block_{n}")(x)
        x = self.flatten(x)
        x = self.drop(self.relu(self.fc1(x)))
        x = self.drop(self.relu(self.fc2(x)))
        return self.fc3(x)


@MODELS.register
class VGG11(VGGNet):
    depth = 11


@MODELS.register
class VGG13(VGGNet):
    depth = 13


@MODELS.register
class VGG16(VGGNet):
    depth = 16


@MODELS.register
class VGG19(VGGNet):
    depth = 19


@MODELS.register
class VGG19Sigmoid(VGGNet):
    """VGG19 with a sigmoid after fc2 (PaddleClas's deep-hashing backbone)."""
    depth, sigmoid_fc2 = 19, True
