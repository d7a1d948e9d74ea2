"""SE-ResNet_vd (Hu et al. 2018 on ResNet-D), PaddleClas's ``model_zoo/se_resnet_vd.py`` layout
(see ``resnet_classic.py`` for the key names):

    conv1_1..conv1_3 (32, 32, 64) -> pool2d_max -> bb_<s>_<i> -> pool2d_avg -> out

Basic (18/34) or bottleneck (50) blocks with an SE layer ``scale`` (reduction 16) before the
residual sum; the first block of stages 2-4 average-pools in its shortcut.
"""
from __future__ import annotations

from ..registry import MODELS
from .common import check_class_num
from .resnet_classic import ClassicResNet, residual_stages, vd_stem

DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}
WIDTHS = (64, 128, 256, 512)
SE_REDUCTION = 16


class SE_ResNet_vd(ClassicResNet):
    """SE-ResNet_vd; subclasses fix ``layers``.

    Args:
        class_num: classifier width (PaddleClas's class takes no other argument).
    """
    layers: int = 50

    def __init__(self, class_num: int = 1000):
        super().__init__()
        bottleneck = self.layers >= 50
        out_channels = [width * 4 if bottleneck else width for width in WIDTHS]
        stages = residual_stages(DEPTHS[self.layers], WIDTHS, out_channels, 64, vd=True, bottleneck=bottleneck,
                                 se_reduction=SE_REDUCTION, se_named=False)
        self._assemble(vd_stem(3, (32, 32, 64)), stages, out_channels[-1], check_class_num(class_num))


@MODELS.register
class SE_ResNet18_vd(SE_ResNet_vd):
    layers = 18


@MODELS.register
class SE_ResNet34_vd(SE_ResNet_vd):
    layers = 34


@MODELS.register
class SE_ResNet50_vd(SE_ResNet_vd):
    layers = 50
