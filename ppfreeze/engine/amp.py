"""Automatic mixed precision, PaddleClas ``AMP`` section (GPU only; a warned no-op on CPU)."""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Dict, Optional

import paddle

from ..config.errors import ConfigError

logger = logging.getLogger("ppfreeze")
_AMP_KEYS = ("scale_loss", "use_dynamic_loss_scaling", "level", "use_promote", "incr_every_n_steps")


class Amp:
    """Wraps autocast + loss scaling so the train step reads the same with or without AMP."""

    def __init__(self, amp_cfg: Optional[Dict[str, Any]], device: str):
        amp_cfg = amp_cfg or {}
        for k in amp_cfg:
            if k not in _AMP_KEYS:
                raise ConfigError(f"AMP.{k}", "unknown key", f"known: {', '.join(_AMP_KEYS)}")
        self.enabled = bool(amp_cfg) and device.startswith("gpu")
        if amp_cfg and not self.enabled:
            logger.warning("AMP section ignored: mixed precision is a no-op on %s (training runs in float32)", device)
        self.level = str(amp_cfg.get("level", "O1")).upper()
        if self.level not in ("O1", "O2"):
            raise ConfigError("AMP.level", f"expected O1 or O2, got {self.level!r}")
        self.scaler = paddle.amp.GradScaler(
            init_loss_scaling=amp_cfg.get("scale_loss", 1.0),
            use_dynamic_loss_scaling=amp_cfg.get("use_dynamic_loss_scaling", False)) if self.enabled else None

    def autocast(self):
        """Context manager for the forward pass."""
        if not self.enabled:
            return contextlib.nullcontext()
        return paddle.amp.auto_cast(level=self.level)

    def backward(self, loss: paddle.Tensor) -> None:
        (self.scaler.scale(loss) if self.enabled else loss).backward()

    def step(self, optimizer: paddle.optimizer.Optimizer) -> None:
        if self.enabled:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
