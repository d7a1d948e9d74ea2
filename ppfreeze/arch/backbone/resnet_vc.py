"""ResNet_vc ("Bag of Tricks" variant C: the 3x3 deep stem, original strided shortcuts),
PaddleClas's ``model_zoo/resnet_vc.py`` layout (see ``resnet_classic.py`` for the key names):

    conv1_1..conv1_3 (32, 32, 64) -> pool2d_max -> bb_<s>_<i> (bottlenecks) -> pool2d_avg -> out
"""
from __future__ import annotations

from ..registry import MODELS
from .common import check_class_num
from .resnet_classic import ClassicResNet, residual_stages, vd_stem

DEPTHS = {50: (3, 4, 6, 3)}
WIDTHS = (64, 128, 256, 512)


class ResNet_vc(ClassicResNet):
    """ResNet_vc; subclasses fix ``layers`` (PaddleClas registers 50 only).

    Args:
        class_num: classifier width (PaddleClas's class takes no other argument).
    """
    layers: int = 50

    def __init__(self, class_num: int = 1000):
        super().__init__()
        out_channels = [width * 4 for width in WIDTHS]
        stages = residual_stages(DEPTHS[self.layers], WIDTHS, out_channels, 64, vd=False)
        self._assemble(vd_stem(3, (32, 32, 64)), stages, out_channels[-1], check_class_num(class_num))


@MODELS.register
class ResNet50_vc(ResNet_vc):
    layers = 50
