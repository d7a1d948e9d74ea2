"""PaddleClas's ``weight_attr`` / ``bias_attr`` mappings of gears -> ``paddle.ParamAttr``.

``{initializer: {name: Normal, std: 0.001}, learning_rate: 1.0e-20, regularizer: {name: L2Decay,
coeff: 1e-4}, trainable: true}``; ``false`` means no such parameter (``bias_attr: false``), ``true``
or ``null`` Paddle's default.
"""
from __future__ import annotations

from typing import Any, Optional, Union

import paddle
import paddle.nn as nn

from ...config.errors import ConfigError, check_mapping
from ...config.expr import to_number
from ...utils.builder import Registry

INITIALIZERS = Registry("initializer")
for _name in ("Constant", "Normal", "TruncatedNormal", "Uniform", "XavierNormal", "XavierUniform",
              "KaimingNormal", "KaimingUniform"):
    INITIALIZERS.register(getattr(nn.initializer, _name), name=_name)

PARAM_REGULARIZERS = Registry("parameter regularizer")
PARAM_REGULARIZERS.register(paddle.regularizer.L2Decay, name="L2Decay")
PARAM_REGULARIZERS.register(paddle.regularizer.L1Decay, name="L1Decay")

_ATTR_KEYS = ("initializer", "learning_rate", "regularizer", "trainable")


def param_attr_from_config(cfg: Any, key: str) -> Union[None, bool, paddle.ParamAttr]:
    """A ``weight_attr`` / ``bias_attr`` mapping (or ``false`` / ``true`` / ``null``) -> what Paddle layers take.

    Raises:
        ConfigError: unknown keys, an unknown initializer or regularizer, a non-boolean ``trainable``.
    """
    if cfg is None or cfg is True:
        return None
    if cfg is False:
        return False
    check_mapping(cfg, key, _ATTR_KEYS, "{initializer: {name: Constant, value: 1.0}}", "parameter attribute")
    initializer = cfg.get("initializer")
    regularizer = cfg.get("regularizer")
    trainable = cfg.get("trainable", True)
    if not isinstance(trainable, bool):
        raise ConfigError(f"{key}.trainable", f"expected true or false, got {trainable!r}")
    return paddle.ParamAttr(
        initializer=INITIALIZERS.build(initializer, f"{key}.initializer") if initializer is not None else None,
        learning_rate=float(to_number(cfg.get("learning_rate", 1.0), f"{key}.learning_rate")),
        regularizer=_regularizer(regularizer, f"{key}.regularizer"),
        trainable=trainable)


def _regularizer(cfg: Any, key: str) -> Optional[paddle.regularizer.WeightDecayRegularizer]:
    if cfg is None:
        return None
    return PARAM_REGULARIZERS.build(cfg, key)
