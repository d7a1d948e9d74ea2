"""The resolved freeze state of one epoch: what every parameter and BN layer does."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

# Methods under which a frozen parameter has stop_gradient=True and sits outside the optimizer.
GRADIENT_FREE = ("cut", "stop_gradient")
# BN policies under which the running statistics stay fixed in train mode.
STATS_FROZEN = ("frozen", "freeze_stats")
# BN policies under which BN weight/bias are frozen.
AFFINE_FROZEN = ("frozen", "freeze_affine")


@dataclass(frozen=True)
class ParamState:
    """How one parameter is treated in one epoch.

    ``method`` is the method actually used (``auto`` already resolved) for frozen
    parameters and None for trainable ones; ``lr_mult`` is the effective multiplier on the
    parameter's own base learning rate (0 for ``lr_zero``); ``rule`` is the config key that
    decided it (a rule, a shortcut, a milestone) or None.
    """
    name: str
    frozen: bool
    method: Optional[str]
    bn: Optional[str]
    lr_mult: float
    in_optimizer: bool
    rule: Optional[str]

    @property
    def stop_gradient(self) -> bool:
        """True when the parameter gets no gradient at all."""
        return self.frozen and self.method in GRADIENT_FREE


@dataclass
class FreezeState:
    """Every parameter's :class:`ParamState` plus BN policies and the cut boundary."""
    epoch: int
    params: Dict[str, ParamState]
    bn: Dict[str, str]
    cut_boundary: Optional[str] = None
    notes: List[str] = field(default_factory=list)
    bn_rules: Dict[str, Optional[str]] = field(default_factory=dict)  # BN layer -> rule that set its policy

    def frozen_names(self) -> List[str]:
        """Frozen parameter names in model order."""
        return [n for n, p in self.params.items() if p.frozen]

    def stats_frozen_layers(self) -> List[str]:
        """BN layers whose running statistics are held fixed."""
        return [n for n, policy in self.bn.items() if policy in STATS_FROZEN]

    def signature(self) -> list:
        """A JSON-able summary used to fingerprint the plan (order-stable)."""
        return [self.epoch, self.cut_boundary,
                [[p.name, p.frozen, p.method, p.bn, round(p.lr_mult, 12), p.in_optimizer]
                 for p in self.params.values()],
                sorted(self.bn.items())]
