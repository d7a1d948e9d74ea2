"""ResNeXt (Xie et al. 2017) and ResNeXt_vd, PaddleClas's ``model_zoo/resnext.py`` /
``resnext_vd.py`` layout (see ``resnet_classic.py`` for the key names):

    ResNeXt:    conv (7x7)                  -> pool2d_max -> bb_<s>_<i> -> pool2d_avg -> out
    ResNeXt_vd: conv1_1..conv1_3 (3x3 stem) -> pool2d_max -> bb_<s>_<i> (shortcuts pool first) -> ...

Blocks are bottlenecks whose 3x3 conv has ``cardinality`` groups: 32x4d widths 128..1024 with
outputs twice that, 64x4d widths 256..2048 with outputs equal to them.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import paddle.nn as nn

from ..registry import MODELS
from .common import check_choice, check_class_num
from .resnet_classic import ClassicResNet, ConvBN, residual_stages, vd_stem

DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def resnext_stages(layers: int, cardinality: int, in_channels: int, vd: bool, data_format: str = "NCHW",
                   se_reduction: Optional[int] = None) -> List[List[nn.Layer]]:
    """The four stages of (SE-)ResNeXt blocks after a stem that emits ``in_channels``."""
    widths = (128, 256, 512, 1024) if cardinality == 32 else (256, 512, 1024, 2048)
    out_channels = [width * 2 if cardinality == 32 else width for width in widths]
    return residual_stages(DEPTHS[layers], widths, out_channels, in_channels, vd, groups=cardinality,
                           se_reduction=se_reduction, data_format=data_format)


class ResNeXt(ClassicResNet):
    """ResNeXt with a 7x7 stem.  Subclasses fix ``layers`` and ``cardinality`` (SE-ResNeXt also
    ``se_reduction`` and its stem: ``se_resnext.py``).

    Args:
        class_num: classifier width.
        input_image_channel: channels of the input image.
        data_format: "NCHW" or "NHWC" (the layout the layers compute in; the input stays NCHW).
    """
    layers: int = 50
    cardinality: int = 32
    se_reduction: Optional[int] = None

    def __init__(self, class_num: int = 1000, input_image_channel: int = 3, data_format: str = "NCHW"):
        super().__init__()
        check_choice(data_format, ("NCHW", "NHWC"), "data_format")
        stem = self._stem(input_image_channel, data_format)
        stem_channels = stem[-1][1]._conv._out_channels
        stages = resnext_stages(self.layers, self.cardinality, stem_channels, vd=False, data_format=data_format,
                                se_reduction=self.se_reduction)
        self._assemble(stem, stages, 2048, check_class_num(class_num), data_format)

    def _stem(self, input_image_channel: int, data_format: str) -> List[Tuple[str, nn.Layer]]:
        """The 7x7 stem conv (64 channels)."""
        return [("conv", ConvBN(input_image_channel, 64, 7, stride=2, act="relu", data_format=data_format))]


class ResNeXt_vd(ClassicResNet):
    """ResNeXt with the vd stem (three 3x3 convs) and average-pooling shortcuts.

    Args:
        class_num: classifier width (PaddleClas's ResNeXt_vd takes no other argument).
    """
    layers: int = 50
    cardinality: int = 32
    stem_widths: Tuple[int, int, int] = (32, 32, 64)
    se_reduction: Optional[int] = None

    def __init__(self, class_num: int = 1000):
        super().__init__()
        stem = vd_stem(3, self.stem_widths)
        stages = resnext_stages(self.layers, self.cardinality, self.stem_widths[-1], vd=True,
                                se_reduction=self.se_reduction)
        self._assemble(stem, stages, 2048, check_class_num(class_num))


@MODELS.register
class ResNeXt50_32x4d(ResNeXt):
    layers, cardinality = 50, 32


@MODELS.register
class ResNeXt50_64x4d(ResNeXt):
    layers, cardinality = 50, 64


@MODELS.register
class ResNeXt101_32x4d(ResNeXt):
    layers, cardinality = 101, 32


@MODELS.register
class ResNeXt101_64x4d(ResNeXt):
    layers, cardinality = 101, 64


@MODELS.register
class ResNeXt152_32x4d(ResNeXt):
    layers, cardinality = 152, 32


@MODELS.register
class ResNeXt152_64x4d(ResNeXt):
    layers, cardinality = 152, 64


@MODELS.register
class ResNeXt50_vd_32x4d(ResNeXt_vd):
    layers, cardinality = 50, 32


@MODELS.register
class ResNeXt50_vd_64x4d(ResNeXt_vd):
    layers, cardinality = 50, 64


@MODELS.register
class ResNeXt101_vd_32x4d(ResNeXt_vd):
    layers, cardinality = 101, 32


@MODELS.register
class ResNeXt101_vd_64x4d(ResNeXt_vd):
    layers, cardinality = 101, 64


@MODELS.register
class ResNeXt152_vd_32x4d(ResNeXt_vd):
    layers, cardinality = 152, 32


@MODELS.register
class ResNeXt152_vd_64x4d(ResNeXt_vd):
    layers, cardinality = 152, 64
