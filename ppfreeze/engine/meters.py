"""Per-step values kept on the device until a log step reads them (one host sync per read).

Reading a device scalar (``float(loss)``) makes the host wait for the device; doing it every
step stalls a GPU every step. :class:`StepMeter` accumulates losses and metrics as tensors and
converts them together when the engine logs; :class:`DivergenceGuard` remembers the first
non-finite loss on the device, so the NaN stop still names the exact step.
"""
from __future__ import annotations

import time
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import paddle

Number = Union[float, int, paddle.Tensor]


class StepMeter:
    """Window averages of per-step values plus ``batch_cost``, ``reader_cost`` and ``ips``."""

    def __init__(self) -> None:
        self._values: Dict[str, List[Number]] = {}
        self._samples = 0
        self._steps = 0
        self._reader = 0.0
        self._since = time.time()

    def add_reader_time(self, seconds: float) -> None:
        """Time the step waited for its batch."""
        self._reader += seconds

    def add(self, values: Dict[str, Number], batch_size: Optional[int] = None) -> None:
        """Record one step's values (tensors stay on the device); ``batch_size`` counts the step."""
        for name, value in values.items():
            if isinstance(value, paddle.Tensor):
                value = value.detach().astype("float32").reshape([])
            self._values.setdefault(name, []).append(value)
        if batch_size is not None:
            self._samples += int(batch_size)
            self._steps += 1

    def read(self) -> Dict[str, float]:
        """Averages since the last read (one host sync for all tensors), then start a new window."""
        names = list(self._values)
        tensors = [paddle.stack([v if isinstance(v, paddle.Tensor) else paddle.to_tensor(float(v))
                                 for v in self._values[n]]).mean() for n in names]
        means = paddle.stack(tensors).numpy().tolist() if tensors else []
        elapsed = time.time() - self._since
        steps = max(self._steps, 1)
        out = dict(zip(names, (float(m) for m in means)))
        out.update(batch_cost=elapsed / steps, reader_cost=self._reader / steps,
                   ips=self._samples / max(elapsed, 1e-9))
        self.__init__()
        return out


class DivergenceGuard:
    """The first global step whose loss was NaN/Inf, tracked on the device."""

    def __init__(self) -> None:
        self._step: Optional[paddle.Tensor] = None
        self._value: Optional[paddle.Tensor] = None

    def observe(self, loss: paddle.Tensor, step: int) -> None:
        """Note ``loss`` of global ``step`` (no host sync)."""
        loss = loss.detach().astype("float32").reshape([])
        if self._step is None:
            self._step = paddle.full([], -1, dtype="int64")
            self._value = paddle.zeros([], dtype="float32")
        first = paddle.logical_and(paddle.logical_not(paddle.isfinite(loss)), self._step < 0)
        self._step = paddle.where(first, paddle.full([], step, dtype="int64"), self._step)
        self._value = paddle.where(first, loss, self._value)

    def first_bad(self) -> Optional[Tuple[int, float]]:
        """``(step, loss value)`` of the first non-finite loss, or None (reads the device)."""
        if self._step is None:
            return None
        step = int(self._step)
        return (step, float(np.asarray(self._value))) if step >= 0 else None
