"""PP-HGNetV2 (PaddleClas 2023): PP-HGNet with a two-path stem, light (1x1 + depthwise) layers and
learnable affine blocks (LAB) after the activations of the small models.

Parameter names follow PaddleClas's ``legendary_models/pp_hgnet_v2.py``, so the published
``PPHGNetV2_B*_ssld_pretrained.pdparams`` load as-is:

    stem.stem1|stem2a|stem2b|stem3|stem4 . conv|bn|[lab.scale, lab.bias]
    stages.<s>.downsample                                 3x3 depthwise stride-2 conv (stages 2-4)
    stages.<s>.blocks.<b>.layers.<l>[.conv1|conv2]       ``layer_num`` chained (light) convs
    stages.<s>.blocks.<b>.aggregation_squeeze_conv | aggregation_excitation_conv
    last_conv.weight, [lab.scale, lab.bias], fc.weight, fc.bias

Forward: stem -> stages.0..3 -> avg_pool -> last_conv -> act -> [lab] -> dropout -> flatten -> fc.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Union

import paddle
import paddle.nn as nn
from paddle.nn.initializer import Constant

from ..base import ArchModel
from ..registry import MODELS
from .common import (StagesLayerList, add_last_conv_head, check_bool, check_class_num, check_probability,
                     declare_stages, indexed_stage_map, int_list, last_conv_head, last_conv_head_units, number_list,
                     param_attr)
from .pphgnet import bn_attrs, chained_outputs, check_stage_chain, conv_attr, stage_rows

STAGE_FIELDS = ("in_channels", "mid_channels", "out_channels", "block_num", "is_downsample", "light_block",
                "kernel_size", "layer_num")
LAB_LR = 0.01  # LAB parameters learn at 1/100 of the stage's rate


class LearnableAffineBlock(nn.Layer):
    """``scale * x + bias`` with two learnable scalars."""

    def __init__(self, scale_value: float = 1.0, bias_value: float = 0.0, lr_mult: float = 1.0,
                 lab_lr: float = LAB_LR):
        super().__init__()
        self.scale = self.create_parameter([1], attr=param_attr(lr_mult * lab_lr, initializer=Constant(scale_value)))
        self.bias = self.create_parameter([1], attr=param_attr(lr_mult * lab_lr, initializer=Constant(bias_value)))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.scale * x + self.bias


class ConvBNAct(nn.Layer):
    """Conv (no bias) -> BN -> optional ReLU -> optional LAB. ``padding="SAME"`` pads like Paddle's
    SAME (extra row/column at the end); otherwise the padding keeps the size at stride 1."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: Union[int, str] = 1, groups: int = 1, use_act: bool = True, use_lab: bool = False,
                 lr_mult: float = 1.0):
        super().__init__()
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride,
                              padding=padding if isinstance(padding, str) else (kernel_size - 1) // 2,
                              groups=groups, weight_attr=conv_attr(lr_mult), bias_attr=False)
        weight_attr, bias_attr = bn_attrs(lr_mult)
        self.bn = nn.BatchNorm2D(out_channels, weight_attr=weight_attr, bias_attr=bias_attr)
        self.act = nn.ReLU() if use_act else None
        self.lab = LearnableAffineBlock(lr_mult=lr_mult) if use_act and use_lab else None

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.bn(self.conv(x))
        if self.act is not None:
            x = self.act(x)
        if self.lab is not None:
            x = self.lab(x)
        return x


class LightConvBNAct(nn.Layer):
    """1x1 conv (no activation) then a kxk depthwise conv with activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, use_lab: bool = False,
                 lr_mult: float = 1.0):
        super().__init__()
        self.conv1 = ConvBNAct(in_channels, out_channels, 1, use_act=False, use_lab=use_lab, lr_mult=lr_mult)
        self.conv2 = ConvBNAct(out_channels, out_channels, kernel_size, groups=out_channels, use_act=True,
                               use_lab=use_lab, lr_mult=lr_mult)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.conv2(self.conv1(x))


class StemBlock(nn.Layer):
    """Strided 3x3 conv, then two paths (2x2 max pool | two 2x2 convs) concatenated, a strided
    3x3 conv and a 1x1 conv: 4x downsampling."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, use_lab: bool = False,
                 lr_mult: float = 1.0):
        super().__init__()
        opts = dict(use_lab=use_lab, lr_mult=lr_mult)
        self.stem1 = ConvBNAct(in_channels, mid_channels, 3, 2, **opts)
        self.stem2a = ConvBNAct(mid_channels, mid_channels // 2, 2, 1, padding="SAME", **opts)
        self.stem2b = ConvBNAct(mid_channels // 2, mid_channels, 2, 1, padding="SAME", **opts)
        self.stem3 = ConvBNAct(mid_channels * 2, mid_channels, 3, 2, **opts)
        self.stem4 = ConvBNAct(mid_channels, out_channels, 1, 1, **opts)
        self.pool = nn.MaxPool2D(kernel_size=2, stride=1, ceil_mode=True, padding="SAME")

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.stem1(x)
        conv_path = self.stem2b(self.stem2a(x))
        x = paddle.concat([self.pool(x), conv_path], axis=1)
        return self.stem4(self.stem3(x))


class HGV2_Block(nn.Layer):
    """``layer_num`` chained (light) convs; the input and every output are concatenated and mixed
    by a 1x1 squeeze (to out/2) and a 1x1 excitation conv; plus a residual when ``identity``."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, kernel_size: int = 3,
                 layer_num: int = 6, identity: bool = False, light_block: bool = True, use_lab: bool = False,
                 lr_mult: float = 1.0):
        super().__init__()
        self.identity = identity
        layer_cls = LightConvBNAct if light_block else ConvBNAct
        self.layers = nn.LayerList([
            layer_cls(in_channels if i == 0 else mid_channels, mid_channels, kernel_size=kernel_size,
                      use_lab=use_lab, lr_mult=lr_mult)
            for i in range(layer_num)])
        self.aggregation_squeeze_conv = ConvBNAct(in_channels + layer_num * mid_channels, out_channels // 2, 1,
                                                  use_lab=use_lab, lr_mult=lr_mult)
        self.aggregation_excitation_conv = ConvBNAct(out_channels // 2, out_channels, 1, use_lab=use_lab,
                                                     lr_mult=lr_mult)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self.aggregation_excitation_conv(self.aggregation_squeeze_conv(chained_outputs(self.layers, x)))
        return y + x if self.identity else y


class HGV2_Stage(nn.Layer):
    """Optional depthwise stride-2 downsampling, then ``block_num`` HGV2 blocks."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, block_num: int, layer_num: int = 6,
                 is_downsample: bool = True, light_block: bool = True, kernel_size: int = 3, use_lab: bool = False,
                 lr_mult: float = 1.0):
        super().__init__()
        self.downsample = ConvBNAct(in_channels, in_channels, 3, 2, groups=in_channels, use_act=False,
                                    use_lab=use_lab, lr_mult=lr_mult) if is_downsample else None
        self.blocks = nn.Sequential(*[
            HGV2_Block(in_channels if i == 0 else out_channels, mid_channels, out_channels, kernel_size, layer_num,
                       identity=i > 0, light_block=light_block, use_lab=use_lab, lr_mult=lr_mult)
            for i in range(block_num)])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        return self.blocks(x)


class PPHGNetV2(StagesLayerList, ArchModel):
    """PP-HGNetV2; subclasses (B0..B6) fix the defaults of ``stem_channels``, ``stage_config`` and
    ``use_lab``.

    Args:
        class_num: classifier width.
        use_lab: learnable affine blocks after the activations (B0-B3 use them).
        use_last_conv: False drops ``last_conv``; the fc then reads the pooled features.
        class_expand: channels of the 1x1 ``last_conv`` after pooling.
        dropout_prob: dropout after ``last_conv``.
        lr_mult_list: 5 learning-rate multipliers: stem, stage1..stage4 (the head keeps 1.0).
        stem_channels: [in, mid, out] channels of the stem (PaddleClas: e.g. [3, 16, 16]).
        stage_config: ``{stageN: [in_channels, mid_channels, out_channels, block_num, is_downsample,
            light_block, kernel_size, layer_num]}``.
    """
    default_stem: Sequence[int] = ()
    default_stages: Dict[str, Sequence[Any]] = {}
    default_use_lab: bool = False

    def __init__(self, class_num: int = 1000, use_lab: Optional[bool] = None, use_last_conv: bool = True,
                 class_expand: int = 2048, dropout_prob: Any = 0.0, lr_mult_list: Optional[Sequence[float]] = None,
                 stem_channels: Optional[Sequence[int]] = None,
                 stage_config: Optional[Dict[str, Sequence[Any]]] = None):
        super().__init__()
        class_num = check_class_num(class_num)
        use_lab = check_bool(self.default_use_lab if use_lab is None else use_lab, "use_lab")
        use_last_conv = check_bool(use_last_conv, "use_last_conv")
        class_expand = check_class_num(class_expand, "class_expand")
        dropout_prob = check_probability(dropout_prob, "dropout_prob")
        stem = int_list(list(self.default_stem) if stem_channels is None else stem_channels, 3, "stem_channels")
        rows = stage_rows(self.default_stages if stage_config is None else stage_config, STAGE_FIELDS,
                          ("is_downsample", "light_block"))
        check_stage_chain(rows, stem[2])
        lr_mults = number_list(lr_mult_list, len(rows) + 1, 1.0, "lr_mult_list")

        self.stem = StemBlock(stem[0], stem[1], stem[2], use_lab=use_lab, lr_mult=lr_mults[0])
        self.add_sublayer("stages", nn.LayerList([
            HGV2_Stage(in_c, mid_c, out_c, blocks, layer_num, down, light, kernel, use_lab, lr_mult=lr_mults[i + 1])
            for i, (in_c, mid_c, out_c, blocks, down, light, kernel, layer_num) in enumerate(rows)]))

        num_features = add_last_conv_head(self, rows[-1][2], use_last_conv, class_expand, dropout_prob,
                                          conv_weight_attr=conv_attr(),
                                          lab=LearnableAffineBlock if use_lab else None)
        self.fc = nn.Linear(num_features, class_num, bias_attr=param_attr(initializer=Constant(0.0)))

        self.class_num = class_num
        self.num_features = num_features
        declare_stages(self, indexed_stage_map(["stem"], len(rows), last_conv_head_units(self)))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.stem(x)
        for stage in self.stage_layers:
            x = stage(x)
        return last_conv_head(self, x)


# in_channels, mid_channels, out_channels, block_num, is_downsample, light_block, kernel_size, layer_num
@MODELS.register
class PPHGNetV2_B0(PPHGNetV2):
    default_stem, default_use_lab = (3, 16, 16), True
    default_stages = {"stage1": [16, 16, 64, 1, False, False, 3, 3], "stage2": [64, 32, 256, 1, True, False, 3, 3],
                      "stage3": [256, 64, 512, 2, True, True, 5, 3], "stage4": [512, 128, 1024, 1, True, True, 5, 3]}


@MODELS.register
class PPHGNetV2_B1(PPHGNetV2):
    default_stem, default_use_lab = (3, 24, 32), True
    default_stages = {"stage1": [32, 32, 64, 1, False, False, 3, 3], "stage2": [64, 48, 256, 1, True, False, 3, 3],
                      "stage3": [256, 96, 512, 2, True, True, 5, 3], "stage4": [512, 192, 1024, 1, True, True, 5, 3]}


@MODELS.register
class PPHGNetV2_B2(PPHGNetV2):
    default_stem, default_use_lab = (3, 24, 32), True
    default_stages = {"stage1": [32, 32, 96, 1, False, False, 3, 4], "stage2": [96, 64, 384, 1, True, False, 3, 4],
                      "stage3": [384, 128, 768, 3, True, True, 5, 4], "stage4": [768, 256, 1536, 1, True, True, 5, 4]}


@MODELS.register
class PPHGNetV2_B3(PPHGNetV2):
    default_stem, default_use_lab = (3, 24, 32), True
    default_stages = {"stage1": [32, 32, 128, 1, False, False, 3, 5], "stage2": [128, 64, 512, 1, True, False, 3, 5],
                      "stage3": [512, 128, 1024, 3, True, True, 5, 5],
                      "stage4": [1024, 256, 2048, 1, True, True, 5, 5]}


@MODELS.register
class PPHGNetV2_B4(PPHGNetV2):
    default_stem, default_use_lab = (3, 32, 48), False
    default_stages = {"stage1": [48, 48, 128, 1, False, False, 3, 6], "stage2": [128, 96, 512, 1, True, False, 3, 6],
                      "stage3": [512, 192, 1024, 3, True, True, 5, 6],
                      "stage4": [1024, 384, 2048, 1, True, True, 5, 6]}


@MODELS.register
class PPHGNetV2_B5(PPHGNetV2):
    default_stem, default_use_lab = (3, 32, 64), False
    default_stages = {"stage1": [64, 64, 128, 1, False, False, 3, 6], "stage2": [128, 128, 512, 2, True, False, 3, 6],
                      "stage3": [512, 256, 1024, 5, True, True, 5, 6],
                      "stage4": [1024, 512, 2048, 2, True, True, 5, 6]}


@MODELS.register
class PPHGNetV2_B6(PPHGNetV2):
    default_stem, default_use_lab = (3, 48, 96), False
    default_stages = {"stage1": [96, 96, 192, 2, False, False, 3, 6], "stage2": [192, 192, 512, 3, True, False, 3, 6],
                      "stage3": [512, 384, 1024, 6, True, True, 5, 6],
                      "stage4": [1024, 768, 2048, 3, True, True, 5, 6]}
