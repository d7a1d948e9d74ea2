"""Prove that frozen tensors stay frozen: hash them, check them, fail loudly naming the tensor."""
from __future__ import annotations

import hashlib
from collections import Counter
from typing import Dict, List, Optional, Tuple

import numpy as np
import paddle

from ..errors import TrainingError
from .model_index import unwrap
from .plan import FreezePlan


class FrozenTensorChanged(TrainingError):
    """A frozen parameter or frozen BN statistic changed during training."""

    def __init__(self, name: str, where: str, max_abs_diff: float, rule: Optional[str] = None):
        self.name = name
        self.where = where
        self.max_abs_diff = max_abs_diff
        self.rule = rule
        by = f" (frozen by {rule})" if rule else ""
        super().__init__(f"frozen tensor '{name}'{by} changed at {where} (max |diff| {max_abs_diff:.3g}); "
                         f"something updated it despite the Freeze plan (an optimizer built before the plan "
                         f"was applied, a zeroed instead of cleared gradient, a BN layer put back in train "
                         f"mode by custom code?)")


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


class FreezeAudit:
    """Snapshot of every tensor the plan keeps fixed, checked as ``Freeze.verify`` says.

    Call :meth:`snapshot` after ``plan.apply`` (and again after each schedule milestone).
    """

    def __init__(self, model: paddle.nn.Layer, plan: FreezePlan):
        self.model = unwrap(model)
        self.plan = plan
        self._saved: Dict[str, Tuple[str, np.ndarray]] = {}
        self._rules: Dict[str, Optional[str]] = {}

    def _tensors(self) -> Dict[str, paddle.Tensor]:
        names = self.plan.frozen_tensor_names(self.plan.applied_epoch or 1)
        state = self.model.state_dict()
        return {n: state[n] for n in names}

    def snapshot(self) -> None:
        """Hash (and keep a host copy of) every frozen parameter and frozen BN statistic."""
        self._saved = {}
        self._rules = self.plan.frozen_tensor_rules(self.plan.applied_epoch or 1)
        for name, tensor in self._tensors().items():
            array = tensor.numpy().copy()
            self._saved[name] = (_digest(array), array)

    def check(self, where: str) -> None:
        """Raise :class:`FrozenTensorChanged` naming the first tensor that differs from the snapshot."""
        for name, tensor in self._tensors().items():
            if name not in self._saved:
                raise RuntimeError(f"FreezeAudit: '{name}' is frozen but was not snapshotted; "
                                   f"call snapshot() after every plan.apply()")
            digest, array = self._saved[name]
            now = tensor.numpy()
            if _digest(now) != digest:
                diff = float(np.max(np.abs(now.astype(np.float64) - array.astype(np.float64)))) if now.size else 0.0
                raise FrozenTensorChanged(name, where, diff, self._rules.get(name))

    def summary(self) -> str:
        """One line for the log, e.g. ``frozen tensors unchanged: 24 tensors, hash 3fa2c1d0`` followed,
        by the count per rule that froze them (``(Arch.freeze_params_list.0: 20, Freeze.until: 4)``)."""
        combined = hashlib.sha256("".join(d for d, _ in self._saved.values()).encode()).hexdigest()[:8]
        line = f"frozen tensors unchanged: {len(self._saved)} tensors, hash {combined}"
        per_rule = Counter(self._rules.get(n) or "-" for n in self._saved)
        if per_rule:
            line += " (" + ", ".join(f"{rule}: {count}" for rule, count in per_rule.items()) + ")"
        return line

    def per_rule(self) -> Dict[str, int]:
        """How many snapshotted tensors each rule (config key) froze."""
        return dict(Counter(self._rules.get(n) or "-" for n in self._saved))

    def should_check(self, step: int, epoch_end: bool, train_end: bool) -> bool:
        """Whether ``Freeze.verify`` asks for a check now (``step`` is the global 1-based step)."""
        verify = self.plan.spec.verify
        if verify == "never" or not self._saved:
            return False
        if verify == "end":
            return train_end
        if verify == "epoch":
            return epoch_end or train_end
        return train_end or (step > 0 and step % verify == 0)

    @property
    def names(self) -> List[str]:
        """Names of the snapshotted tensors."""
        return list(self._saved)
