"""Small helpers shared by the backbones: parameter attributes and argument checks."""
from __future__ import annotations

from typing import Any, List, Optional, Sequence

from paddle import ParamAttr
from paddle.regularizer import L2Decay

from ...config.errors import ConfigError
from ...config.expr import to_number


def param_attr(lr_mult: float = 1.0, no_decay: bool = False, initializer: Any = None) -> ParamAttr:
    """A ParamAttr carrying a per-stage learning-rate multiplier (and optionally no weight decay)."""
    regularizer = L2Decay(0.0) if no_decay else None
    return ParamAttr(learning_rate=lr_mult, regularizer=regularizer, initializer=initializer)


def number_list(values: Optional[Sequence[Any]], length: int, default: float, key: str) -> List[float]:
    """Validate a per-stage list such as ``lr_mult_list``; ``None`` means ``[default] * length``."""
    if values is None:
        return [default] * length
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
