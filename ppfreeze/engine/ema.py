"""Model EMA (PaddleClas ``EMA: {decay: 0.9999}``): a moving average of the weights.

The average covers every floating-point ``state_dict`` entry (BN statistics included, as in
PaddleClas). Frozen tensors do not change, so their average stays equal to them.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Dict, Iterator, Optional

import paddle

from ..config.errors import ConfigError, check_mapping

logger = logging.getLogger("ppfreeze")


class ModelEMA:
    """Keeps ``shadow = decay * shadow + (1 - decay) * weights`` after every step."""

    def __init__(self, model: paddle.nn.Layer, decay: float):
        self.decay = decay
        self.shadow: Dict[str, paddle.Tensor] = {k: v.detach().clone() for k, v in model.state_dict().items()
                                                 if v.dtype in (paddle.float32, paddle.float64, paddle.float16)}

    @classmethod
    def from_config(cls, ema_cfg: Optional[Dict[str, Any]], model: paddle.nn.Layer) -> Optional["ModelEMA"]:
        """None without an ``EMA`` section; otherwise a ModelEMA with the validated decay."""
        if not ema_cfg:
            return None
        check_mapping(ema_cfg, "EMA", ["decay"], "{decay: 0.9999}")
        decay = ema_cfg.get("decay", 0.9999)
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay < 1.0:
            raise ConfigError("EMA.decay", f"expected a number in [0, 1), got {decay!r}", "e.g. 0.9999")
        return cls(model, float(decay))

    @paddle.no_grad()
    def update(self, model: paddle.nn.Layer) -> None:
        """Fold the current weights into the average (call after each optimizer step)."""
        for k, v in model.state_dict().items():
            if k in self.shadow:
                self.shadow[k] = self.shadow[k] * self.decay + v.detach() * (1.0 - self.decay)

    def state_dict(self) -> Dict[str, paddle.Tensor]:
        return dict(self.shadow)

    def set_state_dict(self, state: Dict[str, Any]) -> None:
        missing = sorted(set(self.shadow) - set(state))
        if missing:
            raise ConfigError("Global.checkpoints", f"the checkpoint's EMA weights lack {missing[:3]}",
                              "resume with the same Arch, or drop the EMA section")
        self.shadow = {k: paddle.to_tensor(state[k]) if not isinstance(state[k], paddle.Tensor) else state[k]
                       for k in self.shadow}

    @contextlib.contextmanager
    def applied(self, model: paddle.nn.Layer) -> Iterator[None]:
        """Temporarily load the averaged weights into ``model`` (for eval or saving)."""
        backup = {k: v.detach().clone() for k, v in model.state_dict().items() if k in self.shadow}
        model.set_state_dict(self.shadow)
        try:
            yield
        finally:
            model.set_state_dict(backup)
