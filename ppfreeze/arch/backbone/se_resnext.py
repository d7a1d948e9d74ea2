"""SE-ResNeXt (Hu et al. 2018), SE-ResNeXt_vd and SENet154_vd, PaddleClas's ``model_zoo/se_resnext.py``
and ``se_resnext_vd.py`` layout: ResNeXt blocks (``resnext.py``) with an SE layer ``scale``
(reduction 16) after the last 1x1 conv; see ``resnet_classic.py`` for the key names.

    SE_ResNeXt50/101:       conv (7x7, 64)                  -> pool2d_max -> bb_<s>_<i> -> pool2d_avg -> out
    SE_ResNeXt152_64x4d:    conv1_1..conv1_3 (64, 64, 128)  -> ...
    SE_ResNeXt50_vd_32x4d,
    SENet154_vd:            conv1_1..conv1_3 (64, 64, 128)  -> ... shortcuts average-pool first

SE_ResNeXt152_64x4d: PaddleClas's model gives its first block 64 input channels although its
stem emits 128, so it cannot run; ours feeds the first block the stem's 128 channels (as SENet154_vd
and the original SENet do).  Its ``bb_0_0.conv0`` / ``bb_0_0.short`` weights are therefore
[256, 128, 1, 1] where PaddleClas's are [256, 64, 1, 1]; every other key and shape is PaddleClas's.
"""
from __future__ import annotations

from typing import List, Tuple

import paddle.nn as nn

from ..registry import MODELS
from .resnet_classic import vd_stem
from .resnext import ResNeXt, ResNeXt_vd

SE_REDUCTION = 16


class SE_ResNeXt(ResNeXt):
    """SE-ResNeXt; subclasses fix ``layers`` and ``cardinality`` (152 layers get the 3x3 deep stem).

    Args:
        class_num: classifier width.
        input_image_channel: channels of the input image.
        data_format: "NCHW" or "NHWC" (the layout the layers compute in; the input stays NCHW).
    """
    se_reduction = SE_REDUCTION

    def _stem(self, input_image_channel: int, data_format: str) -> List[Tuple[str, nn.Layer]]:
        """ResNeXt's 7x7 stem; for 152 layers three 3x3 convs (64, 64, 128 channels)."""
        if self.layers < 152:
            return super()._stem(input_image_channel, data_format)
        return vd_stem(input_image_channel, (64, 64, 128), data_format)


class SE_ResNeXt_vd(ResNeXt_vd):
    """SE-ResNeXt with the 64-64-128 deep stem and average-pooling shortcuts.

    Args:
        class_num: classifier width (PaddleClas's class takes no other argument).
    """
    stem_widths = (64, 64, 128)
    se_reduction = SE_REDUCTION


@MODELS.register
class SE_ResNeXt50_32x4d(SE_ResNeXt):
    layers, cardinality = 50, 32


@MODELS.register
class SE_ResNeXt101_32x4d(SE_ResNeXt):
    layers, cardinality = 101, 32


@MODELS.register
class SE_ResNeXt152_64x4d(SE_ResNeXt):
    layers, cardinality = 152, 64


@MODELS.register
class SE_ResNeXt50_vd_32x4d(SE_ResNeXt_vd):
    layers, cardinality = 50, 32


@MODELS.register
class SENet154_vd(SE_ResNeXt_vd):
    layers, cardinality = 152, 64
