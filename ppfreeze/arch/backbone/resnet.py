"""ResNet and ResNet_vd (He et al. 2015; "Bag of Tricks" vd variant), PaddleClas layout.

Parameter names, nesting and shapes follow PaddleClas's current ("legendary") ResNet, so its
published ``ResNet50_pretrained.pdparams`` / ``ResNet50_vd_pretrained.pdparams`` load as-is:

    stem.0.conv.weight, stem.0.bn.{weight,bias,_mean,_variance}     (vd: stem.0..stem.2)
    blocks.<i>.conv0 / conv1 / [conv2] / [short] . conv|bn . ...
    fc.weight [C, class_num], fc.bias

Forward: stem -> max_pool -> blocks -> avg_pool -> flatten -> fc.  ``flatten`` is a real
sublayer because retrieval configs cut the network there (``BackboneStopLayer: flatten``).
The PaddleClas variants built on ResNet50 live in ``resnet_variant.py``.
"""
from __future__ import annotations

import functools
import itertools
import math
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import paddle
import paddle.nn as nn
from paddle.nn.initializer import Uniform

from ...config.errors import ConfigError
from ..base import ArchModel
from ..registry import MODELS
from .common import (attach_return_patterns, check_choice, check_class_num, number_list, param_attr,
                     return_patterns_of, stride_list)
from .dbb import DiverseBranchBlock

# depth -> (block type, blocks per stage)
DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 12, 48, 3)),
}
STAGE_WIDTHS = (64, 128, 256, 512)  # bottleneck blocks output 4x these


class ConvBNLayer(nn.Layer):
    """Conv -> BN -> optional ReLU.  In vd mode a 2x2 average pool does the downsampling
    instead of a strided 1x1 conv, so no input pixel is skipped."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride=1,
                 act: Optional[str] = None, is_vd_mode: bool = False, lr_mult: float = 1.0,
                 data_format: str = "NCHW"):
        super().__init__()
        self.is_vd_mode = is_vd_mode
        if is_vd_mode:
            self.avg_pool = nn.AvgPool2D(kernel_size=2, stride=stride, padding="SAME", ceil_mode=True,
                                         data_format=data_format)
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=1 if is_vd_mode else stride,
                              padding=(kernel_size - 1) // 2, weight_attr=param_attr(lr_mult), bias_attr=False,
                              data_format=data_format)
        self.bn = nn.BatchNorm2D(out_channels, weight_attr=param_attr(lr_mult), bias_attr=param_attr(lr_mult),
                                 data_format=data_format)
        self.relu = nn.ReLU() if act == "relu" else None

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.is_vd_mode:
            x = self.avg_pool(x)
        x = self.bn(self.conv(x))
        if self.relu is not None:
            x = self.relu(x)
        return x


def _main_conv(layer_type: str, lr_mult: float, data_format: str):
    """The factory of a block's conv0..conv2: ConvBNLayer, or PaddleClas's DiverseBranchBlock
    (``layer_type``); shortcuts and the stem stay ConvBNLayer, as in PaddleClas."""
    if layer_type == "DiverseBranchBlock":
        return functools.partial(DiverseBranchBlock, lr_mult=lr_mult)
    return functools.partial(ConvBNLayer, lr_mult=lr_mult, data_format=data_format)


class BasicBlock(nn.Layer):
    """Two 3x3 convs plus a residual (ResNet18/34)."""
    expansion = 1

    def __init__(self, in_channels: int, width: int, stride, projection: bool,
                 vd_projection: bool, lr_mult: float = 1.0, data_format: str = "NCHW", layer_type: str = "ConvBNLayer"):
        super().__init__()
        conv = _main_conv(layer_type, lr_mult, data_format)
        self.conv0 = conv(in_channels, width, 3, stride=stride, act="relu")
        self.conv1 = conv(width, width, 3, act=None)
        self.short = ConvBNLayer(in_channels, width, 1, stride=stride, is_vd_mode=vd_projection, lr_mult=lr_mult,
                                 data_format=data_format) if projection else None
        self.relu = nn.ReLU()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        identity = x if self.short is None else self.short(x)
        return self.relu(self.conv1(self.conv0(x)) + identity)


class BottleneckBlock(nn.Layer):
    """1x1 reduce -> 3x3 (strided) -> 1x1 expand (x4), plus a residual (ResNet50+)."""
    expansion = 4

    def __init__(self, in_channels: int, width: int, stride, projection: bool,
                 vd_projection: bool, lr_mult: float = 1.0, data_format: str = "NCHW", layer_type: str = "ConvBNLayer"):
        super().__init__()
        out_channels = width * self.expansion
        conv = _main_conv(layer_type, lr_mult, data_format)
        self.conv0 = conv(in_channels, width, 1, act="relu")
        self.conv1 = conv(width, width, 3, stride=stride, act="relu")
        self.conv2 = conv(width, out_channels, 1, act=None)
        self.short = ConvBNLayer(in_channels, out_channels, 1, stride=stride, is_vd_mode=vd_projection,
                                 lr_mult=lr_mult, data_format=data_format) if projection else None
        self.relu = nn.ReLU()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        identity = x if self.short is None else self.short(x)
        return self.relu(self.conv2(self.conv1(self.conv0(x))) + identity)


class ResNet(ArchModel):
    """ResNet backbone + classifier.  Subclasses fix ``depth`` and ``version`` ("vb" or "vd").

    Args:
        class_num: classifier width.
        input_image_channel: channels of the input image.
        lr_mult_list: 5 learning-rate multipliers: stem, stage1..stage4 (the fc keeps 1.0).
        stride_list: 5 strides: stem conv, max_pool, stage2..stage4 first blocks (stage1 is 1);
            each an int or an ``[h, w]`` pair.
        stem_act: "relu" or None.
        use_first_short_conv: PaddleClas gives stage1's first block a projection shortcut even
            when shapes match; False gives the original ResNet identity there.
        data_format: "NCHW" or "NHWC": the layout the layers compute in (the input stays NCHW and
            is transposed once; NHWC only changes speed on GPUs, not the outputs).
        return_patterns: sublayers (PaddleClas spelling, e.g. ``blocks[3]``) whose outputs the model
            returns too, as ``{"logits": ..., "blocks[3]": ...}``.
        return_stages: True or stage indices (0..3): return the output of those stages' last blocks.
        layer_type: "ConvBNLayer", or "DiverseBranchBlock": the blocks' convs become DBBs (trained as
            four branches, fused into one conv by :meth:`export_model`).
    """
    depth: int = 0
    version: str = "vb"

    def __init__(self, class_num: int = 1000, input_image_channel: int = 3,
                 lr_mult_list: Optional[Sequence[float]] = None, stride_list: Optional[Sequence] = None,
                 stem_act: Optional[str] = "relu", use_first_short_conv: bool = True, data_format: str = "NCHW",
                 return_patterns: Optional[Sequence[str]] = None, return_stages=None,
                 layer_type: str = "ConvBNLayer"):
        super().__init__()
        class_num = check_class_num(class_num)
        lr_mults = number_list(lr_mult_list, 5, 1.0, "lr_mult_list")
        strides = self._strides(stride_list)
        check_choice(stem_act, ("relu", None), "stem_act")
        check_choice(data_format, ("NCHW", "NHWC"), "data_format")
        check_choice(layer_type, ("ConvBNLayer", "DiverseBranchBlock"), "layer_type")
        if layer_type == "DiverseBranchBlock" and data_format != "NCHW":
            raise ConfigError("data_format", "DiverseBranchBlock runs NCHW only (as in PaddleClas)",
                              "remove data_format or use layer_type: ConvBNLayer")
        block_type, depths = DEPTHS[self.depth]
        block_cls = BasicBlock if block_type == "basic" else BottleneckBlock
        if not use_first_short_conv and block_cls.expansion != 1:
            raise ConfigError("use_first_short_conv", f"false needs an identity shortcut, but the first block of "
                                                      f"{type(self).__name__} widens 64 -> 256 channels",
                              "use it with ResNet18/34 only")
        is_vd = self.version == "vd"
        conv = functools.partial(ConvBNLayer, data_format=data_format)

        # vd replaces the 7x7 stem with three 3x3 convs
        stem_convs = [(input_image_channel, 32, 3, strides[0]), (32, 32, 3, 1), (32, 64, 3, 1)] if is_vd \
            else [(input_image_channel, 64, 7, strides[0])]
        self.stem = nn.Sequential(*[conv(i, o, k, stride=s, act=stem_act, lr_mult=lr_mults[0])
                                    for i, o, k, s in stem_convs])
        self.max_pool = nn.MaxPool2D(kernel_size=3, stride=strides[1], padding=1, data_format=data_format)

        blocks: List[nn.Layer] = []
        in_channels = 64
        for stage, (num_blocks, width) in enumerate(zip(depths, STAGE_WIDTHS)):
            for i in range(num_blocks):
                first = i == 0
                blocks.append(block_cls(
                    in_channels, width,
                    stride=strides[stage + 1] if first and stage > 0 else 1,
                    projection=first and (stage > 0 or use_first_short_conv),
                    # vd pools before the projection, except at the very first block (no downsampling there)
                    vd_projection=is_vd and not (stage == 0 and first),
                    lr_mult=lr_mults[stage + 1], data_format=data_format, layer_type=layer_type))
                in_channels = width * block_cls.expansion
        self.blocks = nn.Sequential(*blocks)

        self.avg_pool = self._global_pool(data_format)
        self.flatten = nn.Flatten()
        bound = 1.0 / math.sqrt(in_channels)
        self.fc = nn.Linear(in_channels, class_num, weight_attr=param_attr(initializer=Uniform(-bound, bound)))

        self.data_format = data_format
        self.class_num = class_num
        self.num_features = in_channels
        self.stages = _stages(depths)
        # PaddleClas's stage patterns: the last block of each stage
        stage_ends = [f"blocks[{end - 1}]" for end in itertools.accumulate(depths)]
        attach_return_patterns(self, return_patterns_of(return_patterns, return_stages, stage_ends))

    def _global_pool(self, data_format: str) -> nn.Layer:
        """The pooling before the classifier, named ``avg_pool`` (variants may pool otherwise)."""
        return nn.AdaptiveAvgPool2D(1, data_format=data_format)

    def _strides(self, values: Optional[Sequence]) -> List:
        """The 5 strides of ``stride_list`` (variants may pin some of them)."""
        return stride_list(values, 5)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.data_format == "NHWC":
            x = paddle.transpose(x, [0, 2, 3, 1])
        x = self.stem(x)
        x = self.max_pool(x)
        x = self.blocks(x)
        x = self.avg_pool(x)
        x = self.flatten(x)
        return self.fc(x)


def _stages(depths: Sequence[int]) -> Dict[str, List[str]]:
    """stem, stage1..stage4 (their ``blocks.i``), head -- in forward order."""
    stages: Dict[str, List[str]] = OrderedDict(stem=["stem", "max_pool"])
    start = 0
    for n, num_blocks in enumerate(depths, 1):
        stages[f"stage{n}"] = [f"blocks.{i}" for i in range(start, start + num_blocks)]
        start += num_blocks
    stages["head"] = ["avg_pool", "flatten", "fc"]
    return stages


@MODELS.register
class ResNet18(ResNet):
    depth, version = 18, "vb"


@MODELS.register
class ResNet18_vd(ResNet):
    depth, version = 18, "vd"


@MODELS.register
class ResNet34(ResNet):
    depth, version = 34, "vb"


@MODELS.register
class ResNet34_vd(ResNet):
    depth, version = 34, "vd"


@MODELS.register
class ResNet50(ResNet):
    depth, version = 50, "vb"


@MODELS.register
class ResNet50_vd(ResNet):
    depth, version = 50, "vd"


@MODELS.register
class ResNet101(ResNet):
    depth, version = 101, "vb"


@MODELS.register
class ResNet101_vd(ResNet):
    depth, version = 101, "vd"


@MODELS.register
class ResNet152(ResNet):
    depth, version = 152, "vb"


@MODELS.register
class ResNet152_vd(ResNet):
    depth, version = 152, "vd"


@MODELS.register
class ResNet200_vd(ResNet):
    depth, version = 200, "vd"
