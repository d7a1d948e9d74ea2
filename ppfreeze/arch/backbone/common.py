"""Small helpers shared by the backbones: parameter attributes, argument checks, common layers
(conv-BN-activation, squeeze-and-excitation, channel shuffle), stage grouping, channel rounding,
stochastic depth, BN folding, and PaddleClas's ``return_patterns`` / ``return_stages`` (extra
outputs of named sublayers)."""
from __future__ import annotations

import logging
import re
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import yaml
from paddle import ParamAttr
from paddle.regularizer import L2Decay

from ...config.errors import ConfigError, did_you_mean
from ...config.expr import to_number
from ...config.schema import MAX_CLASS_NUM

logger = logging.getLogger("ppfreeze")


def param_attr(lr_mult: float = 1.0, no_decay: bool = False, initializer: Any = None) -> ParamAttr:
    """A ParamAttr carrying a per-stage learning-rate multiplier (and optionally no weight decay)."""
    regularizer = L2Decay(0.0) if no_decay else None
    return ParamAttr(learning_rate=lr_mult, regularizer=regularizer, initializer=initializer)


def number_list(values: Optional[Sequence[Any]], length: int, default: float, key: str) -> List[float]:
    """Validate a per-stage list such as ``lr_mult_list``; ``None`` means ``[default] * length``.

    PaddleClas also accepts the list written as a string (``"[0.1, 0.1, 0.2]"``, it calls
    ``eval``); here the string is parsed as YAML and each item as a number.
    """
    if values is None:
        return [default] * length
    if isinstance(values, str):
        try:
            values = yaml.safe_load(values)
        except yaml.YAMLError:
            pass  # reported below as "expected a list"
    if not isinstance(values, (list, tuple)) or len(values) != length:
        raise ConfigError(key, f"expected a list of {length} numbers (one per stage), got {values!r}",
                          f"e.g. {key.split('.')[-1]}: {[default] * length}")
    return [to_number(v, f"{key}[{i}]") for i, v in enumerate(values)]


def check_class_num(class_num: Any, key: str = "class_num") -> int:
    """``class_num`` must be a positive integer (the width of the classifier)."""
    if isinstance(class_num, bool) or not isinstance(class_num, int) or class_num < 1:
        raise ConfigError(key, f"expected a positive integer, got {class_num!r}",
                          "set Arch.class_num (or Global.class_num) to the number of classes")
    if class_num > MAX_CLASS_NUM:
        raise ConfigError(key, f"{class_num} is more than Paddle can size a layer with (2**31-1)",
                          "set Arch.class_num (or Global.class_num) to the number of classes")
    return class_num


def check_positive_int(value: Any, key: str) -> int:
    """``value`` if it is a positive integer (a channel count, ...), else a ConfigError naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(key, f"expected a positive integer, got {value!r}")
    return value


def int_list(values: Any, length: Optional[int], key: str, minimum: int = 1) -> List[int]:
    """Validate a list of integers >= ``minimum`` (``length`` None: any non-empty length)."""
    ok = isinstance(values, (list, tuple)) and len(values) > 0 and (length is None or len(values) == length)
    if ok:
        ok = all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in values)
    if not ok:
        size = f"{length} integers" if length is not None else "a non-empty list of integers"
        raise ConfigError(key, f"expected {size} >= {minimum}, got {values!r}")
    return list(values)


def check_probability(value: Any, key: str) -> float:
    """A probability such as ``dropout_prob`` or ``drop_path_rate``: a number in [0, 1)."""
    number = to_number(value, key)
    if not 0 <= number < 1:
        raise ConfigError(key, f"expected a number in [0, 1), got {value!r}")
    return float(number)


def stride_list(values: Optional[Sequence[Any]], length: int, key: str = "stride_list") -> List[Any]:
    """Validate a per-stage ``stride_list``: each entry an int or an ``[h, w]`` pair (PaddleClas passes
    e.g. ``[2, [2, 1], [2, 1], [2, 1], [2, 1]]`` to keep the width of text lines); None means all 2."""
    if values is None:
        return [2] * length
    example = f"e.g. {key.split('.')[-1]}: {[2] * length}"
    if not isinstance(values, (list, tuple)) or len(values) != length:
        raise ConfigError(key, f"expected a list of {length} strides (one per stage), got {values!r}", example)
    strides: List[Any] = []
    for i, value in enumerate(values):
        pair = value if isinstance(value, (list, tuple)) else [value]
        if len(pair) not in (1, 2) or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in pair):
            raise ConfigError(f"{key}[{i}]", f"expected a positive int or an [h, w] pair of them, got {value!r}",
                              example)
        strides.append(list(pair) if len(pair) == 2 else pair[0])
    return strides


def check_choice(value: Any, choices: Sequence[Any], key: str, hint: Optional[str] = None) -> Any:
    """``value`` must be one of ``choices`` (a ConfigError naming ``key`` otherwise)."""
    if value not in choices:
        raise ConfigError(key, f"expected one of {list(choices)}, got {value!r}", hint)
    return value


def check_bool(value: Any, key: str) -> bool:
    """A YAML boolean (PaddleClas passes these straight to ``if``; a string would always be true)."""
    if not isinstance(value, bool):
        raise ConfigError(key, f"expected true or false, got {value!r}")
    return value


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a scaled channel count to a multiple of ``divisor`` without losing more than 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish, "swish": nn.Swish, "gelu": nn.GELU}


def make_activation(act: Optional[str]) -> Optional[nn.Layer]:
    """The activation layer named ``act`` (None for no activation)."""
    if act is None:
        return None
    if act not in ACTIVATIONS:
        raise ConfigError("act", f"expected one of {list(ACTIVATIONS)}, got {act!r}")
    return ACTIVATIONS[act]()


class ConvBNAct(nn.Sequential):
    """Conv (no bias) -> BN -> optional activation, as one named sequence.

    ``names`` keeps a family's sublayer names, which are its state-dict keys: ``conv`` / ``bn``
    in PaddleClas's newer models, ``_conv`` / ``_batch_norm`` in the older ones. The padding is
    ``(kernel_size - 1) // 2`` ("same" for odd kernels at stride 1).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, act: Optional[str] = None, names: Sequence[str] = ("conv", "bn", "act"),
                 bn_no_decay: bool = False, conv_init: Any = None, lr_mult: float = 1.0):
        conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2,
                         groups=groups, weight_attr=param_attr(lr_mult, initializer=conv_init), bias_attr=False)
        bn = nn.BatchNorm2D(out_channels, weight_attr=param_attr(lr_mult, no_decay=bn_no_decay),
                            bias_attr=param_attr(lr_mult, no_decay=bn_no_decay))
        layers = [(names[0], conv), (names[1], bn)]
        if act is not None:
            layers.append((names[2], make_activation(act)))
        super().__init__(*layers)


class Hardsigmoid(nn.Layer):
    """``hardsigmoid(x) = clip(slope * x + offset, 0, 1)`` with a chosen slope (nn.Hardsigmoid fixes ~1/6)."""

    def __init__(self, slope: float, offset: float = 0.5):
        super().__init__()
        self.slope, self.offset = slope, offset

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.hardsigmoid(x, slope=self.slope, offset=self.offset)


class SEModule(nn.Layer):
    """Squeeze-and-excitation with 1x1 convs: channel gates from globally pooled features.

    ``gate_slope`` is the hard-sigmoid slope: None for nn.Hardsigmoid's (~1/6; PP-LCNet, ESNet),
    0.2 in MobileNetV3.
    """

    def __init__(self, channels: int, reduction: int = 4, lr_mult: float = 1.0, gate_slope: Optional[float] = None):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.conv1 = nn.Conv2D(channels, channels // reduction, 1,
                               weight_attr=param_attr(lr_mult), bias_attr=param_attr(lr_mult))
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2D(channels // reduction, channels, 1,
                               weight_attr=param_attr(lr_mult), bias_attr=param_attr(lr_mult))
        self.hardsigmoid = nn.Hardsigmoid() if gate_slope is None else Hardsigmoid(gate_slope)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        gate = self.hardsigmoid(self.conv2(self.relu(self.conv1(self.avg_pool(x)))))
        return x * gate


def channel_shuffle(x: paddle.Tensor, groups: int) -> paddle.Tensor:
    """Interleave the channels of ``groups`` equal groups (ShuffleNet): [a0 a1 | b0 b1] -> [a0 b0 a1 b1]."""
    _, channels, height, width = x.shape
    x = paddle.reshape(x, [-1, groups, channels // groups, height, width])
    x = paddle.transpose(x, [0, 2, 1, 3, 4])
    return paddle.reshape(x, [-1, channels, height, width])


def split_at_downsampling(units: Sequence[str], strides: Sequence[int]) -> List[List[str]]:
    """Group consecutive blocks into stages: a block with stride > 1 starts a new stage (the first
    block always starts one), so each stage runs at one resolution."""
    groups: List[List[str]] = []
    for unit, stride in zip(units, strides):
        if not groups or stride > 1:
            groups.append([])
        groups[-1].append(unit)
    return groups


def stage_map(stem: Sequence[str], groups: Sequence[Sequence[str]], head: Sequence[str]) -> Dict[str, List[str]]:
    """``stem``, ``stage1``..``stageN`` (one per block group), ``head`` -- the ``stages`` contract."""
    stages: Dict[str, List[str]] = OrderedDict(stem=list(stem))
    for n, group in enumerate(groups, 1):
        stages[f"stage{n}"] = list(group)
    stages["head"] = list(head)
    return stages


def declare_stages(model: nn.Layer, stages: Mapping[str, Sequence[str]]) -> None:
    """Set the model contract's ``stages`` mapping on ``model``.

    Some PaddleClas models name a sublayer ``stages`` (PP-LCNetV2, PP-HGNet, ConvNeXt), and
    their state-dict keys (``stages.0.0.conv.weight``) must stay. Paddle refuses to assign a
    non-layer to a sublayer's name, so the mapping goes into the instance dict, where attribute
    lookup finds it first; the sublayer stays in ``_sub_layers`` (read it with :func:`sublayer`).
    """
    object.__setattr__(model, "stages", stages)


def sublayer(layer: nn.Layer, name: str) -> nn.Layer:
    """The registered sublayer ``name`` (also when an attribute of the same name shadows it)."""
    return layer._sub_layers[name]


class StagesLayerList:
    """Mixin for models whose PaddleClas layout has a LayerList sublayer named ``stages``
    (PP-LCNetV2, PP-HGNet(V2), ConvNeXt): ``stage_layers`` reads it, because the attribute
    ``stages`` holds the contract's mapping (:func:`declare_stages`)."""

    @property
    def stage_layers(self) -> nn.LayerList:
        """PaddleClas's ``stages`` LayerList."""
        return sublayer(self, "stages")


def indexed_stage_map(stem: Sequence[str], num_stages: int, head: Sequence[str]) -> Dict[str, List[str]]:
    """``stem``, ``stage1``..``stageN`` = ``stages.0``..``stages.{N-1}`` (a ``stages`` LayerList), ``head``."""
    return stage_map(stem, [[f"stages.{n}"] for n in range(num_stages)], head)


#: the pooled 1x1-conv head of PP-LCNet, PP-LCNetV2, PP-HGNet and PP-HGNetV2, in forward order
LAST_CONV_HEAD = ("avg_pool", "last_conv", "act", "lab", "dropout", "flatten", "fc")


def add_last_conv_head(model: nn.Layer, num_features: int, use_last_conv: bool, class_expand: int,
                       dropout_prob: float, act: Callable[[], nn.Layer] = nn.ReLU, conv_weight_attr: Any = None,
                       conv_bias_attr: Any = False, lab: Optional[Callable[[], nn.Layer]] = None) -> int:
    """Add the head's sublayers before ``fc`` to ``model`` under PaddleClas's names (state-dict keys):
    ``avg_pool``, then (``use_last_conv``) a 1x1 ``last_conv`` to ``class_expand`` channels, ``act``,
    ``lab`` (PP-HGNetV2's learnable affine block, when given) and ``dropout``, then ``flatten``.

    Layers are created in that order (Paddle names parameters by creation order). Returns the width
    ``fc`` reads; the caller adds ``fc`` (its initialisation and wrapping differ by family).
    """
    model.avg_pool = nn.AdaptiveAvgPool2D(1)
    if use_last_conv:
        model.last_conv = nn.Conv2D(num_features, class_expand, 1, weight_attr=conv_weight_attr,
                                    bias_attr=conv_bias_attr)
        model.act = act()
        if lab is not None:
            model.lab = lab()
        model.dropout = nn.Dropout(p=dropout_prob, mode="downscale_in_infer")
        num_features = class_expand
    else:
        model.last_conv = None
    model.flatten = nn.Flatten(start_axis=1, stop_axis=-1)
    return num_features


def last_conv_head(model: nn.Layer, x: paddle.Tensor) -> paddle.Tensor:
    """Forward through the head :func:`add_last_conv_head` built (and ``model.fc``)."""
    x = model.avg_pool(x)
    if model.last_conv is not None:
        x = model.act(model.last_conv(x))
        lab = getattr(model, "lab", None)
        if lab is not None:
            x = lab(x)
        x = model.dropout(x)
    return model.fc(model.flatten(x))


def last_conv_head_units(model: nn.Layer) -> List[str]:
    """The units of the head :func:`add_last_conv_head` built, in forward order."""
    return [name for name in LAST_CONV_HEAD if getattr(model, name, None) is not None]


class DropPath(nn.Layer):
    """Stochastic depth: in training, zero a residual branch per sample with probability
    ``drop_prob`` and scale the kept ones by ``1 / (1 - drop_prob)``; identity in eval."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = paddle.floor(keep + paddle.rand([x.shape[0]] + [1] * (x.ndim - 1), dtype=x.dtype))
        return x / keep * mask


def fold_batch_norm(kernel: paddle.Tensor, bn: nn.Layer) -> Tuple[paddle.Tensor, paddle.Tensor]:
    """Kernel and bias of ``bn(conv(x))`` as one convolution (``conv`` without bias, eval-mode BN)."""
    std = (bn._variance + bn._epsilon).sqrt()
    scale = bn.weight / std
    return kernel * scale.reshape([-1, 1, 1, 1]), bn.bias - bn._mean * scale


def return_patterns_of(return_patterns: Any, return_stages: Any, stage_patterns: Sequence[str]) -> List[str]:
    """The sublayer patterns whose outputs a model returns besides its logits, with PaddleClas's rules:
    ``return_patterns`` is a list of names such as ``blocks[3]`` or ``avg_pool``; ``return_stages``
    (True: every stage; an int or a list of indices into ``stage_patterns``) is used when no
    ``return_patterns`` are given (PaddleClas drops ``return_stages`` when both are set)."""
    if return_patterns:
        if return_stages is not None and return_stages is not False:
            logger.warning("return_stages is ignored because return_patterns is set (as in PaddleClas)")
        patterns = [return_patterns] if isinstance(return_patterns, str) else return_patterns
        if not isinstance(patterns, (list, tuple)) or not all(isinstance(p, str) for p in patterns):
            raise ConfigError("return_patterns", f"expected a list of sublayer names, got {return_patterns!r}",
                              "e.g. return_patterns: ['blocks[3]', 'blocks[7]']")
        return list(patterns)
    if return_stages is None or return_stages is False:
        return []
    if return_stages is True:
        return list(stage_patterns)
    indices = [return_stages] if isinstance(return_stages, int) else return_stages
    if not isinstance(indices, (list, tuple)) or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(stage_patterns) for i in indices):
        raise ConfigError("return_stages", f"expected true or stage indices in 0..{len(stage_patterns) - 1}, "
                                           f"got {return_stages!r}", f"the stages end at {list(stage_patterns)}")
    return [stage_patterns[i] for i in indices]


class _SaveOutput:
    """Forward post-hook of a tapped sublayer: store its output under the pattern that named it."""

    def __init__(self, store: Dict[str, Any], pattern: str):
        self.store, self.pattern = store, pattern

    def __call__(self, layer, inputs, output):
        self.store[self.pattern] = output


class _ReturnDict:
    """Forward post-hook of the model: ``{"logits": output, pattern: tapped output, ...}``."""

    def __init__(self, store: Dict[str, Any]):
        self.store = store

    def __call__(self, layer, inputs, output):
        result = {"logits": output}
        result.update(self.store)  # tapped in forward order
        self.store.clear()
        return result


def attach_return_patterns(model: nn.Layer, patterns: Sequence[str], key: str = "return_patterns") -> None:
    """Make ``model`` return ``{"logits": ..., pattern: output, ...}`` as PaddleClas's ``return_patterns``
    does; patterns use PaddleClas's spelling (``blocks[3]``, ``stem[0].bn``) and must all exist."""
    if not patterns:
        return
    layers = dict(model.named_sublayers())
    store: Dict[str, Any] = OrderedDict()
    for pattern in patterns:
        name = re.sub(r"\[(\d+)\]", r".\1", pattern)
        if name not in layers:
            raise ConfigError(key, f"{type(model).__name__} has no sublayer '{pattern}'",
                              f"write names as PaddleClas does, e.g. 'blocks[3]'.{did_you_mean(name, layers)}")
        layers[name].register_forward_post_hook(_SaveOutput(store, pattern))
    model.register_forward_post_hook(_ReturnDict(store))
