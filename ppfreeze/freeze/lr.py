"""Learning-rate multipliers: ``lr_mult`` patterns (longest match wins) and ``layer_decay``.

The effective multiplier of a trainable parameter is
``layer_decay ** depth * pattern_mult * (milestone or rule lr_mult)``, applied on top of the
parameter's own base learning rate (``optimize_attr['learning_rate']`` as the model built it).
``depth`` counts the units holding parameters after the parameter's unit, so the head gets
1, the block before it ``decay``, and so on down to the stem.
"""
from __future__ import annotations

from typing import Dict, Optional

from ..config.errors import ConfigError
from .model_index import ModelIndex
from .rules import unmatched_error
from .spec import FreezeSpec


class LrMultipliers:
    """Per-parameter multipliers from ``lr_mult`` and ``layer_decay`` (rules/milestones excluded)."""

    def __init__(self, spec: FreezeSpec, index: ModelIndex):
        self._pattern_mult = self._resolve_patterns(spec, index)
        self._decay = self._resolve_decay(spec, index)

    @staticmethod
    def _resolve_patterns(spec: FreezeSpec, index: ModelIndex) -> Dict[str, float]:
        best: Dict[str, tuple] = {}  # name -> (pattern length, mult)
        for pattern, mult in spec.lr_mult:
            names = index.match_params(pattern)
            if not names and spec.strict:
                raise unmatched_error(f"{spec.key}.lr_mult.{pattern}", pattern, index, "parameter")
            for name in names:
                if name not in best or len(pattern) > best[name][0]:
                    best[name] = (len(pattern), mult)
        return {name: mult for name, (_, mult) in best.items()}

    @staticmethod
    def _resolve_decay(spec: FreezeSpec, index: ModelIndex) -> Dict[str, float]:
        if spec.layer_decay is None:
            return {}
        units = index.param_units()
        if len(units) < 2:
            raise ConfigError(f"{spec.key}.layer_decay", f"needs at least two units holding parameters, "
                                                          f"the model has {len(units)}",
                              "declare stages on the model or drop layer_decay")
        depth = {u: len(units) - 1 - i for i, u in enumerate(units)}
        return {n: spec.layer_decay ** depth[index.unit_of[n]] for n in index.param_names
                if index.unit_of[n] in depth}

    def base(self, name: str) -> float:
        """Multiplier from ``lr_mult`` and ``layer_decay`` alone."""
        return self._decay.get(name, 1.0) * self._pattern_mult.get(name, 1.0)

    def effective(self, name: str, source_mult: Optional[float]) -> float:
        """Multiplier for a trainable parameter, including a rule's or milestone's ``lr_mult``."""
        return self.base(name) * (1.0 if source_mult is None else source_mult)
