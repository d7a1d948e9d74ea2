"""Small helpers shared by the backbones: parameter attributes, argument checks, channel
rounding, stochastic depth, BN folding and the re-parameterised (deploy) copy of a model."""
from __future__ import annotations

import copy
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import paddle
import paddle.nn as nn
import yaml
from paddle import ParamAttr
from paddle.regularizer import L2Decay

from ...config.errors import ConfigError
from ...config.expr import to_number


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
    return class_num


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


def check_bool(value: Any, key: str) -> bool:
    """A YAML boolean (PaddleClas passes these straight to ``if``; a string would always be true)."""
    if not isinstance(value, bool):
        raise ConfigError(key, f"expected true or false, got {value!r}")
    return value


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a scaled channel count to a multiple of ``divisor`` without losing more than 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


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


def reparameterized_copy(model: nn.Layer) -> nn.Layer:
    """A deep copy of ``model`` in eval mode in which every sublayer that has a ``fused()``
    method (a multi-branch training block) is replaced by the single-branch layer it returns.
    ``model`` itself is left untouched, so training can go on after an export."""
    deploy = copy.deepcopy(model)
    deploy.eval()
    with paddle.no_grad():
        _replace_fusable(deploy)
    return deploy


def _replace_fusable(layer: nn.Layer) -> None:
    for name, child in list(layer._sub_layers.items()):
        if child is None:
            continue
        if hasattr(child, "fused"):
            fused = child.fused()
            fused.eval()
            layer._sub_layers[name] = fused
        else:
            _replace_fusable(child)
