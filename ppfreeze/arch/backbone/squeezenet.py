"""SqueezeNet 1.0 / 1.1 (Iandola et al. 2016), PaddleClas's ``model_zoo/squeezenet.py`` layout.

Parameter names follow the published ``SqueezeNet1_*_pretrained.pdparams``:

    _conv.{weight,bias}                                          stem conv (+ ReLU, max pool)
    _conv1.._conv8 . _conv|_conv_path1|_conv_path2 ._conv.{weight,bias}
                                                                 fire modules 2..9 (squeeze,
                                                                 expand 1x1, expand 3x3)
    _conv9.{weight,bias}                                         1x1 conv classifier

Forward: _conv -> ReLU -> _pool -> fires with two more 3x3/2 max pools between them -> dropout
-> _conv9 -> ReLU -> global average pool -> squeeze.  PaddleClas reuses one ``_pool`` layer for
all three max pools; here the later two are their own (parameter-free) layers ``_pool2`` and
``_pool3``, so that every stage unit runs once per forward (the Freeze cut hook and feature cache
rely on that).  Keys are unchanged.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Tuple

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..base import ArchModel
from ..registry import MODELS
from .common import check_class_num

# version -> (stem conv: out, kernel, padding; fires: (in, squeeze, expand) for fire2..fire9;
#             the fire index (1-based, _conv<i>) after which a max pool runs)
VERSIONS = {
    "1.0": ((96, 7, 0), ((96, 16, 64), (128, 16, 64), (128, 32, 128), (256, 32, 128), (256, 48, 192),
                         (384, 48, 192), (384, 64, 256), (512, 64, 256)), (3, 7)),
    "1.1": ((64, 3, 1), ((64, 16, 64), (128, 16, 64), (128, 32, 128), (256, 32, 128), (256, 48, 192),
                         (384, 48, 192), (384, 64, 256), (512, 64, 256)), (2, 4)),
}


class FireConv(nn.Layer):
    """Conv (with bias) -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0):
        super().__init__()
        self._conv = nn.Conv2D(in_channels, out_channels, kernel_size, padding=padding)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.relu(self._conv(x))


class Fire(nn.Layer):
    """Squeeze 1x1 -> (expand 1x1 | expand 3x3) concatenated."""

    def __init__(self, in_channels: int, squeeze: int, expand: int):
        super().__init__()
        self._conv = FireConv(in_channels, squeeze, 1)
        self._conv_path1 = FireConv(squeeze, expand, 1)
        self._conv_path2 = FireConv(squeeze, expand, 3, padding=1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._conv(x)
        return paddle.concat([self._conv_path1(x), self._conv_path2(x)], axis=1)


class SqueezeNet(ArchModel):
    """SqueezeNet; subclasses fix ``version`` ("1.0" or "1.1").

    Args:
        class_num: classifier width (the 1x1 ``_conv9``; its output passes a ReLU, as in PaddleClas).
    """
    version: str = "1.1"

    def __init__(self, class_num: int = 1000):
        super().__init__()
        class_num = check_class_num(class_num)
        (stem_out, stem_kernel, stem_pad), fires, pool_after = VERSIONS[self.version]
        self._conv = nn.Conv2D(3, stem_out, stem_kernel, stride=2, padding=stem_pad)
        self._pool = nn.MaxPool2D(kernel_size=3, stride=2, padding=0)
        self.stages: Dict[str, List[str]] = OrderedDict(stem=["_conv", "_pool"])
        stage: List[str] = []
        for i, (in_ch, squeeze, expand) in enumerate(fires, 1):
            self.add_sublayer(f"_conv{i}", Fire(in_ch, squeeze, expand))
            stage.append(f"_conv{i}")
            if i in pool_after:
                pool = f"_pool{len(self.stages) + 1}"
                self.add_sublayer(pool, nn.MaxPool2D(kernel_size=3, stride=2, padding=0))
                self.stages[f"stage{len(self.stages)}"] = stage + [pool]
                stage = []
        self.stages[f"stage{len(self.stages)}"] = stage
        self._drop = nn.Dropout(p=0.5, mode="downscale_in_infer")
        self._conv9 = nn.Conv2D(512, class_num, 1)
        self._avg_pool = nn.AdaptiveAvgPool2D(1)
        self.stages["head"] = ["_drop", "_conv9", "_avg_pool"]
        self._body: Tuple[str, ...] = tuple(u for name, units in self.stages.items()
                                            if name not in ("stem", "head") for u in units)

        self.class_num = class_num
        self.num_features = 512

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._pool(F.relu(self._conv(x)))
        for name in self._body:
            x = self._sub_layers[name](x)
        x = F.relu(self._conv9(self._drop(x)))
        return paddle.squeeze(self._avg_pool(x), axis=[2, 3])


@MODELS.register
class SqueezeNet1_0(SqueezeNet):
    version = "1.0"


@MODELS.register
class SqueezeNet1_1(SqueezeNet):
    version = "1.1"
