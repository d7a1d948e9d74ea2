"""Small helpers shared by the backbones: parameter attributes, argument checks and PaddleClas's
``return_patterns`` / ``return_stages`` (extra outputs of named sublayers)."""
from __future__ import annotations

import logging
import re
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence

import paddle.nn as nn
from paddle import ParamAttr
from paddle.regularizer import L2Decay

from ...config.errors import ConfigError, did_you_mean
from ...config.expr import to_number

logger = logging.getLogger("ppfreeze")


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
