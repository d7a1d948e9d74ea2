"""Learning-rate multipliers: ``lr_mult`` patterns (longest match wins) and ``layer_decay``.

The effective multiplier of a trainable parameter is
``layer_decay ** depth * pattern_mult * (milestone or rule lr_mult)``, applied on top of the
parameter's own base learning rate (``optimize_attr['learning_rate']`` as the model built it).
``depth`` counts the layer groups holding parameters after the parameter's group: every unit of
the trunk is its own group, while the whole ``stem`` stage and the whole ``head`` stage are one
group each. So the head gets 1, the last block ``decay``, ..., and the stem (for a ViT: patch
embedding, class token and position embedding together) ``decay ** (blocks + 1)``, the BEiT /
PaddleClas ``layerwise_decay`` convention.
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
        if index.branches:
            raise ConfigError(f"{spec.key}.layer_decay", f"the model runs several models side by side "
                                                          f"({', '.join(index.branches)}): depth is ambiguous",
                              "use lr_mult patterns per model instead")
        group_of = {u: u for u in index.param_units()}
        for stage in ("stem", "head"):
            for unit in index.stages.get(stage, []):
                if unit in group_of:
                    group_of[unit] = stage
        groups = list(dict.fromkeys(group_of[u] for u in index.param_units()))
        if len(groups) < 2:
            raise ConfigError(f"{spec.key}.layer_decay", f"needs at least two layer groups holding parameters, "
                                                          f"the model has {len(groups)}",
                              "declare stages on the model or drop layer_decay")
        depth = {g: len(groups) - 1 - i for i, g in enumerate(groups)}
        return {n: spec.layer_decay ** depth[group_of[index.unit_of[n]]] for n in index.param_names
                if index.unit_of[n] in group_of}

    def base(self, name: str) -> float:
        """Multiplier from ``lr_mult`` and ``layer_decay`` alone."""
        return self._decay.get(name, 1.0) * self._pattern_mult.get(name, 1.0)

    def effective(self, name: str, source_mult: Optional[float]) -> float:
        """Multiplier for a trainable parameter, including a rule's or milestone's ``lr_mult``."""
        return self.base(name) * (1.0 if source_mult is None else source_mult)
