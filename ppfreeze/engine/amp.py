"""Automatic mixed precision: PaddleClas's ``AMP`` section.

    AMP: {use_amp: true, use_fp16_test: false, level: O1, scale_loss: 65536.0,
          use_dynamic_loss_scaling: true, use_promote: false}

As in PaddleClas, an ``AMP`` section turns mixed precision on unless it says ``use_amp: false``
(most of PaddleClas's configs carry the section with ``use_amp: False``). ``use_fp16_test``
also casts evaluation. Mixed precision needs a GPU: on CPU the section is accepted and training
runs in float32, with one warning. ``level: O2`` (float16 weights) is refused on a GPU: it would
round the frozen weights to float16, so they would no longer be the weights that were loaded.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Dict, Optional

import paddle

from ..config.errors import ConfigError, check_mapping

logger = logging.getLogger("ppfreeze")
AMP_KEYS = ("use_amp", "use_fp16_test", "level", "scale_loss", "use_dynamic_loss_scaling", "use_promote",
            "incr_every_n_steps", "decr_every_n_nan_or_inf")


def _flag(cfg: Dict[str, Any], name: str, default: bool) -> bool:
    value = cfg.get(name, default)
    if not isinstance(value, bool):
        raise ConfigError(f"AMP.{name}", f"expected true or false, got {value!r}")
    return value


class Amp:
    """Wraps autocast + loss scaling so the train step reads the same with or without AMP.

    Args:
        amp_cfg: the ``AMP`` section (None: no mixed precision).
        device: the device training runs on (``cpu``, ``gpu``, ``gpu:0``).
    """

    def __init__(self, amp_cfg: Optional[Dict[str, Any]], device: str):
        amp_cfg = {} if amp_cfg is None else amp_cfg
        check_mapping(amp_cfg, "AMP", AMP_KEYS, "{use_amp: true, level: O1}")
        requested = bool(amp_cfg) and _flag(amp_cfg, "use_amp", True)
        self.eval_cast = _flag(amp_cfg, "use_fp16_test", False)
        self.use_promote = _flag(amp_cfg, "use_promote", False)
        self.level = str(amp_cfg.get("level", "O1")).upper()
        if self.level not in ("O1", "O2"):
            raise ConfigError("AMP.level", f"expected O1 or O2, got {amp_cfg.get('level')!r}")
        self.enabled = requested and device.startswith("gpu")
        if self.enabled and self.level == "O2":
            raise ConfigError("AMP.level", "O2 (float16 weights with float32 master copies) is not supported",
                              "use level: O1 (float16 compute, float32 weights): frozen weights then stay "
                              "exactly what was loaded")
        if requested and not self.enabled:
            logger.warning("AMP.use_amp is true, but mixed precision needs a GPU: training on %s runs in float32",
                           device)
        self.scaler = paddle.amp.GradScaler(
            init_loss_scaling=float(amp_cfg.get("scale_loss", 1.0)),
            use_dynamic_loss_scaling=_flag(amp_cfg, "use_dynamic_loss_scaling", False),
            incr_every_n_steps=int(amp_cfg.get("incr_every_n_steps", 1000)),
            decr_every_n_nan_or_inf=int(amp_cfg.get("decr_every_n_nan_or_inf", 2))) if self.enabled else None

    def autocast(self, evaluating: bool = False):
        """Context manager for a forward pass (evaluation is cast only with ``use_fp16_test``)."""
        if not self.enabled or (evaluating and not self.eval_cast):
            return contextlib.nullcontext()
        return paddle.amp.auto_cast(level=self.level, use_promote=self.use_promote)

    def backward(self, loss: paddle.Tensor) -> None:
        (self.scaler.scale(loss) if self.enabled else loss).backward()

    def step(self, optimizer: paddle.optimizer.Optimizer) -> None:
        if self.enabled:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
