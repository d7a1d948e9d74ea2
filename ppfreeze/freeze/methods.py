"""Resolve ``auto`` and check ``cut``: which frozen parameters form a gradient-free prefix.

``cut`` is only valid for a prefix of the forward pass (whole units, see ``model_index``)
in which no parameter needs a gradient; the activation leaving that prefix is detached.
``auto`` becomes ``cut`` inside that prefix and ``stop_gradient`` elsewhere.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ..config.errors import ConfigError
from .model_index import ModelIndex
from .rules import Decision
from .state import GRADIENT_FREE

logger = logging.getLogger("ppfreeze")


@dataclass
class MethodResolution:
    """Resolved methods of frozen parameters, the cut boundary and why."""
    methods: Dict[str, str]
    cut_boundary: Optional[str]
    notes: List[str] = field(default_factory=list)


def _needs_no_grad(d: Decision) -> bool:
    return d.frozen and d.method in ("auto",) + GRADIENT_FREE


def gradient_free_prefix(decisions: Dict[str, Decision], index: ModelIndex) -> Tuple[List[str], Optional[str]]:
    """Units from the start in which every parameter needs no gradient, and the first blocker."""
    prefix: List[str] = []
    for unit in index.units:
        blocker = next((p for p in index.params_of_unit[unit] if not _needs_no_grad(decisions[p])), None)
        if blocker is not None:
            return prefix, blocker
        prefix.append(unit)
    return prefix, None


def resolve_methods(decisions: Dict[str, Decision], bn: Dict[str, Tuple[str, str]], index: ModelIndex,
                    epoch: int) -> MethodResolution:
    """Turn requested methods into used ones; explicit ``cut`` outside the prefix is a ConfigError."""
    prefix, blocker = gradient_free_prefix(decisions, index)
    in_prefix = set(index.params_in_units(prefix))
    methods: Dict[str, str] = {}
    for name, d in decisions.items():
        if not d.frozen:
            continue
        if d.method in ("auto", "cut") and name in in_prefix:
            methods[name] = "cut"
        elif d.method == "cut":
            raise ConfigError(f"{_method_key(d.rule)}", f"cut needs a prefix of the forward pass with nothing "
                              f"trainable inside, but '{blocker}' runs before '{name}' and {_why(blocker, decisions, bn, index)}"
                              f" (epoch {epoch})", "use method: auto (falls back to stop_gradient) or stop_gradient")
        elif d.method == "auto":
            methods[name] = "stop_gradient"
        else:
            methods[name] = d.method
    cut_units = [u for u in prefix if any(methods.get(p) == "cut" for p in index.params_of_unit[u])]
    boundary = cut_units[-1] if cut_units and cut_units[-1] in index.layers else None
    notes = _explain(decisions, bn, index, methods, boundary, blocker)
    return MethodResolution(methods=methods, cut_boundary=boundary, notes=notes)


def _method_key(rule: Optional[str]) -> str:
    if rule is None or rule.endswith((".until", ".stages")):
        return (rule.rsplit(".", 1)[0] if rule else "Freeze") + ".method"
    return f"{rule}.method"


def _why(blocker: Optional[str], decisions: Dict[str, Decision], bn: Dict[str, Tuple[str, str]],
         index: ModelIndex) -> str:
    if blocker is None:
        return "is trainable"
    d, owner = decisions[blocker], index.owner[blocker]
    if not d.frozen and owner in bn and bn[owner][0] in ("freeze_stats", "train"):
        return f"stays trainable because its BN layer has bn: {bn[owner][0]} (use bn: frozen to allow the cut)"
    if not d.frozen and owner in index.norm_layers and d.rule is not None:
        return "stays trainable because of ln: train (use ln: frozen to allow the cut)"
    if d.frozen:
        return f"uses method {d.method}, which still computes its gradient"
    return "is trainable"


def _explain(decisions: Dict[str, Decision], bn: Dict[str, Tuple[str, str]], index: ModelIndex,
             methods: Dict[str, str], boundary: Optional[str], blocker: Optional[str]) -> List[str]:
    notes: List[str] = []
    if boundary is not None:
        notes.append(f"auto/cut: the activation leaving '{boundary}' is detached; nothing before it runs backward")
    fallback = [n for n, d in decisions.items() if d.frozen and d.method == "auto" and methods[n] == "stop_gradient"]
    if fallback:
        last_unit = index.unit_of[fallback[-1]]
        first_unit = index.unit_of.get(blocker) or blocker
        span = f"'{first_unit}'" if first_unit == last_unit else f"'{first_unit}' .. '{last_unit}'"
        message = (f"auto: cannot cut at '{last_unit}': '{blocker}' {_why(blocker, decisions, bn, index)}; "
                   f"{len(fallback)} frozen parameters use stop_gradient instead. Lost saving: the backward pass "
                   f"still runs through {span} (activation gradients and their memory) to reach it")
        notes.append(message)
        # Only warn when a freeze rule itself left the blocker trainable; a trainable
        # layer the user never mentioned is an ordinary partial freeze, and PEFT (BitFit's BN
        # affines) keeps it trainable on purpose.
        rule = decisions[blocker].rule if blocker is not None else None
        if rule is not None and not rule.endswith(".peft"):
            logger.warning("Freeze %s", message)
    return notes
