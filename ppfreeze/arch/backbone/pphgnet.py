"""PP-HGNet (PaddleClas 2022): a GPU-friendly "high performance" net of aggregation blocks.

Parameter names follow PaddleClas's ``legendary_models/pp_hgnet.py``, so the published
``PPHGNet_*_pretrained.pdparams`` load as-is:

    stem.<i>.conv / bn                                    three 3x3 convs (the first strided)
    stages.<s>.downsample.conv|bn                         3x3 depthwise stride-2 conv (stages 2-4)
    stages.<s>.blocks.<b>.layers.<l>.conv|bn             ``layer_num`` chained 3x3 convs
    stages.<s>.blocks.<b>.aggregation_conv.conv|bn       1x1 over [input, every layer's output]
    stages.<s>.blocks.<b>.att.conv                        effective SE (one 1x1 conv + sigmoid)
    last_conv.weight (1x1, no bias), fc.weight, fc.bias

Forward: stem -> pool -> stages.0..3 -> avg_pool -> last_conv -> act -> dropout -> flatten -> fc.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import paddle
import paddle.nn as nn
from paddle.nn.initializer import Constant, KaimingNormal

from ...config.errors import ConfigError
from ..base import ArchModel
from ..registry import MODELS
from .common import (StagesLayerList, add_last_conv_head, check_bool, check_class_num, check_probability,
                     declare_stages, indexed_stage_map, int_list, last_conv_head, last_conv_head_units, param_attr)

STAGE_FIELDS = ("in_channels", "mid_channels", "out_channels", "block_num", "downsample")


def conv_attr(lr_mult: float = 1.0) -> Any:
    """Conv weights: Kaiming-normal initialisation."""
    return param_attr(lr_mult, initializer=KaimingNormal())


def bn_attrs(lr_mult: float = 1.0) -> Tuple[Any, Any]:
    """BN scale 1 and shift 0, without weight decay."""
    return (param_attr(lr_mult, no_decay=True, initializer=Constant(1.0)),
            param_attr(lr_mult, no_decay=True, initializer=Constant(0.0)))


def chained_outputs(layers: nn.LayerList, x: paddle.Tensor) -> paddle.Tensor:
    """``x`` and the output of each layer applied in turn (``l1(x)``, ``l2(l1(x))``, ...), concatenated
    on channels: what an HG block aggregates."""
    outputs = [x]
    for layer in layers:
        outputs.append(layer(outputs[-1]))
    return paddle.concat(outputs, axis=1)


class ConvBNAct(nn.Layer):
    """Conv (no bias) -> BN -> optional ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 groups: int = 1, use_act: bool = True):
        super().__init__()
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride, padding=(kernel_size - 1) // 2,
                              groups=groups, weight_attr=conv_attr(), bias_attr=False)
        weight_attr, bias_attr = bn_attrs()
        self.bn = nn.BatchNorm2D(out_channels, weight_attr=weight_attr, bias_attr=bias_attr)
        self.act = nn.ReLU() if use_act else None

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.bn(self.conv(x))
        return self.act(x) if self.act is not None else x


class ESEModule(nn.Layer):
    """Effective squeeze-excitation: one 1x1 conv on the pooled features gates the channels."""

    def __init__(self, channels: int):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.conv = nn.Conv2D(channels, channels, 1, weight_attr=conv_attr())
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x * self.sigmoid(self.conv(self.avg_pool(x)))


class HG_Block(nn.Layer):
    """``layer_num`` chained 3x3 convs; the input and every output are concatenated, mixed by a
    1x1 conv and gated by ESE; plus a residual when ``identity``."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, layer_num: int, identity: bool):
        super().__init__()
        self.identity = identity
        self.layers = nn.LayerList([ConvBNAct(in_channels if i == 0 else mid_channels, mid_channels, 3, 1)
                                    for i in range(layer_num)])
        self.aggregation_conv = ConvBNAct(in_channels + layer_num * mid_channels, out_channels, 1, 1)
        self.att = ESEModule(out_channels)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self.att(self.aggregation_conv(chained_outputs(self.layers, x)))
        return y + x if self.identity else y


class HG_Stage(nn.Layer):
    """Optional depthwise stride-2 downsampling, then ``block_num`` HG blocks."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, block_num: int,
                 layer_num: int, downsample: bool = True):
        super().__init__()
        self.downsample = ConvBNAct(in_channels, in_channels, 3, 2, groups=in_channels, use_act=False) \
            if downsample else None
        self.blocks = nn.Sequential(*[
            HG_Block(in_channels if i == 0 else out_channels, mid_channels, out_channels, layer_num, identity=i > 0)
            for i in range(block_num)])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        return self.blocks(x)


def stage_rows(stage_config: Any, fields: Sequence[str], bool_fields: Sequence[str],
               key: str = "stage_config") -> List[List[Any]]:
    """Validate PaddleClas's ``stage_config`` (``{stage1: [...], ...}`` or a list of rows): one row
    per stage with ``fields`` in order; integers >= 1, except ``bool_fields`` (true/false)."""
    rows = list(stage_config.values()) if isinstance(stage_config, dict) else stage_config
    names = list(stage_config) if isinstance(stage_config, dict) else list(range(len(rows or [])))
    if not isinstance(rows, (list, tuple)) or not rows:
        raise ConfigError(key, f"expected a mapping stage -> [{', '.join(fields)}], got {stage_config!r}")
    checked = []
    for name, row in zip(names, rows):
        row_key = f"{key}.{name}"
        if not isinstance(row, (list, tuple)) or len(row) != len(fields):
            raise ConfigError(row_key, f"expected [{', '.join(fields)}], got {row!r}")
        for field, value in zip(fields, row):
            if field in bool_fields:
                check_bool(value, f"{row_key}.{field}")
            else:
                int_list([value], 1, f"{row_key}.{field}")
        checked.append(list(row))
    return checked


def check_stage_chain(rows: Sequence[Sequence[Any]], first_in: int, key: str = "stage_config") -> None:
    """Each stage must read the width the previous one writes (field 0 = in, field 2 = out)."""
    width = first_in
    for i, row in enumerate(rows):
        if row[0] != width:
            raise ConfigError(key, f"stage {i + 1} reads {row[0]} channels but receives {width}",
                              "in_channels of each stage must equal the previous out_channels (the stem's width first)")
        width = row[2]


class PPHGNet(StagesLayerList, ArchModel):
    """PP-HGNet; subclasses fix the defaults of ``stem_channels``, ``stage_config``, ``layer_num``
    and ``dropout_prob``.

    Args:
        class_num: classifier width.
        use_last_conv: False drops ``last_conv``; the fc then reads the pooled features.
        class_expand: channels of the 1x1 ``last_conv`` after pooling.
        dropout_prob: dropout after ``last_conv``.
        stem_channels: output widths of the stem convs (PaddleClas: e.g. [48, 48, 96]).
        stage_config: ``{stageN: [in_channels, mid_channels, out_channels, block_num, downsample]}``.
        layer_num: 3x3 convs per HG block.
    """
    default_stem: Sequence[int] = ()
    default_stages: Dict[str, Sequence[Any]] = {}
    default_layer_num: int = 0
    default_dropout: float = 0.0

    def __init__(self, class_num: int = 1000, use_last_conv: bool = True, class_expand: int = 2048,
                 dropout_prob: Any = None, stem_channels: Optional[Sequence[int]] = None,
                 stage_config: Optional[Dict[str, Sequence[Any]]] = None, layer_num: Optional[int] = None):
        super().__init__()
        class_num = check_class_num(class_num)
        use_last_conv = check_bool(use_last_conv, "use_last_conv")
        class_expand = check_class_num(class_expand, "class_expand")
        dropout_prob = check_probability(self.default_dropout if dropout_prob is None else dropout_prob,
                                         "dropout_prob")
        stem = int_list(list(self.default_stem) if stem_channels is None else stem_channels, None, "stem_channels")
        rows = stage_rows(self.default_stages if stage_config is None else stage_config, STAGE_FIELDS, ("downsample",))
        check_stage_chain(rows, stem[-1])
        layer_num = int_list([self.default_layer_num if layer_num is None else layer_num], 1, "layer_num")[0]

        widths = [3] + stem
        self.stem = nn.Sequential(*[ConvBNAct(widths[i], widths[i + 1], 3, 2 if i == 0 else 1)
                                    for i in range(len(stem))])
        self.pool = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)
        self.add_sublayer("stages", nn.LayerList([
            HG_Stage(in_c, mid_c, out_c, blocks, layer_num, downsample)
            for in_c, mid_c, out_c, blocks, downsample in rows]))

        num_features = add_last_conv_head(self, rows[-1][2], use_last_conv, class_expand, dropout_prob,
                                          conv_weight_attr=conv_attr())
        self.fc = nn.Linear(num_features, class_num, bias_attr=param_attr(initializer=Constant(0.0)))

        self.class_num = class_num
        self.num_features = num_features
        # stem (stem convs + max pool), stage1..stageN (``stages.i``), head
        declare_stages(self, indexed_stage_map(["stem", "pool"], len(rows), last_conv_head_units(self)))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.pool(self.stem(x))
        for stage in self.stage_layers:
            x = stage(x)
        return last_conv_head(self, x)


@MODELS.register
class PPHGNet_tiny(PPHGNet):
    default_stem = (48, 48, 96)
    default_stages = {"stage1": [96, 96, 224, 1, False], "stage2": [224, 128, 448, 1, True],
                      "stage3": [448, 160, 512, 2, True], "stage4": [512, 192, 768, 1, True]}
    default_layer_num = 5


@MODELS.register
class PPHGNet_small(PPHGNet):
    default_stem = (64, 64, 128)
    default_stages = {"stage1": [128, 128, 256, 1, False], "stage2": [256, 160, 512, 1, True],
                      "stage3": [512, 192, 768, 2, True], "stage4": [768, 224, 1024, 1, True]}
    default_layer_num = 6


@MODELS.register
class PPHGNet_base(PPHGNet):
    default_stem = (96, 96, 160)
    default_stages = {"stage1": [160, 192, 320, 1, False], "stage2": [320, 224, 640, 2, True],
                      "stage3": [640, 256, 960, 3, True], "stage4": [960, 288, 1280, 2, True]}
    default_layer_num = 7
    default_dropout = 0.2
