"""Gradient clipping: ``Optimizer.grad_clip`` and PaddleClas's ``clip_norm`` shorthands.

PaddleClas reads ``clip_norm: x`` as per-tensor clipping (``ClipGradByNorm``) and
``clip_norm_global: x`` as clipping by the global norm of all gradients; we keep both meanings.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import paddle.nn as nn
from paddle.nn.clip import ClipGradBase

from ..config.errors import ConfigError
from ..config.expr import to_number
from ..utils.builder import split_component
from .registry import GRAD_CLIPS

SHORTHANDS = {"clip_norm": "ClipGradByNorm", "clip_norm_global": "ClipGradByGlobalNorm"}


@GRAD_CLIPS.register
def ClipGradByGlobalNorm(clip_norm: float) -> nn.ClipGradByGlobalNorm:
    """Scale all gradients together so their joint L2 norm is at most ``clip_norm``."""
    return nn.ClipGradByGlobalNorm(clip_norm=_positive_norm(clip_norm))


@GRAD_CLIPS.register
def ClipGradByNorm(clip_norm: float) -> nn.ClipGradByNorm:
    """Scale each gradient tensor so its own L2 norm is at most ``clip_norm``."""
    return nn.ClipGradByNorm(clip_norm=_positive_norm(clip_norm))


@GRAD_CLIPS.register
def ClipGradByValue(max: float, min: Optional[float] = None) -> nn.ClipGradByValue:  # noqa: A002 (Paddle's names)
    """Clamp every gradient element to ``[min, max]`` (``min`` defaults to ``-max``)."""
    low = -max if min is None else min
    if not low < max:
        raise ConfigError("min", f"min ({low}) must be below max ({max})")
    return nn.ClipGradByValue(max=max, min=low)


def build_grad_clip(opt_cfg: Dict[str, Any], key: str = "Optimizer") -> Optional[ClipGradBase]:
    """Pop ``grad_clip`` / ``clip_norm`` / ``clip_norm_global`` from ``opt_cfg`` and build the clip.

    Returns ``None`` when none is set; setting more than one is a ConfigError.
    """
    popped = {option: opt_cfg.pop(option, None) for option in ("grad_clip", *SHORTHANDS)}
    found = {option: value for option, value in popped.items() if value is not None}
    if not found:
        return None
    if len(found) > 1:
        raise ConfigError(f"{key}.{sorted(found)[0]}", f"gradient clipping is set twice ({', '.join(sorted(found))})",
                          "keep only one of them")
    (option, value), = found.items()
    clip_key = f"{key}.{option}"
    if option in SHORTHANDS:
        name, kwargs = SHORTHANDS[option], {"clip_norm": value}
    else:
        name, kwargs = split_component(value, clip_key)
    numbers = {k: None if v is None else to_number(v, f"{clip_key}.{k}") for k, v in kwargs.items()}
    return GRAD_CLIPS.build({name: numbers}, clip_key)


def _positive_norm(clip_norm: float) -> float:
    if not clip_norm > 0:
        raise ConfigError("clip_norm", f"must be > 0, got {clip_norm}")
    return float(clip_norm)
