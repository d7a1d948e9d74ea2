"""Rules -> per-parameter decisions (frozen or not, requested method) and BN policies.

The ``until`` / ``stages`` shortcuts become one rule in front of the explicit rules.  With
``strict: true`` a pattern that matches nothing, or two rules that disagree on the same
parameter or BN layer, is a :class:`ConfigError`; without it the later rule wins (warning).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ..config.errors import ConfigError, did_you_mean
from .model_index import ModelIndex, is_under
from .spec import FreezeSpec, RuleSpec

logger = logging.getLogger("ppfreeze")

# BN policies that leave BN weight/bias trainable.
AFFINE_TRAINABLE = ("freeze_stats", "train")


@dataclass
class Decision:
    """What the rules decided for one parameter (method may still be ``auto``)."""
    frozen: bool = False
    method: Optional[str] = None
    rule: Optional[str] = None
    mult: Optional[float] = None  # lr multiplier from a rule or milestone, for trainable params

    def describe(self) -> str:
        return f"frozen ({self.method})" if self.frozen else "trainable"


@dataclass
class RuleMatch:
    """Parameters and layers one rule selected (for the report)."""
    rule: RuleSpec
    params: List[str] = field(default_factory=list)
    layers: List[str] = field(default_factory=list)
    bn_layers: List[str] = field(default_factory=list)


def unmatched_error(key: str, pattern: str, index: ModelIndex, what: str = "parameter, sublayer or stage") -> ConfigError:
    """The error for a pattern that selects nothing, with the closest real names."""
    stem = pattern.strip("*.?[]") or pattern
    examples = ", ".join((list(index.stages) + index.units)[:8])
    return ConfigError(key, f"pattern {pattern!r} matches no {what} of the model",
                       f"stages/units: {examples}; patterns are globs over names such as "
                       f"'{index.param_names[0] if index.param_names else 'fc.weight'}'."
                       f"{did_you_mean(stem, index.all_names())}")


def arch_rules(model_rules: Dict[str, Sequence[str]]) -> List[RuleSpec]:
    """Rules for what the ``Arch`` section freezes itself (a model's ``frozen_by_arch``: PaddleClas's
    ``freeze_params_list``): method ``auto`` (a frozen teacher in front is cut) and fixed BN
    statistics, whatever the Freeze section's defaults."""
    return [RuleSpec(key=key, select=tuple(patterns), method="auto", bn="frozen", ln="frozen")
            for key, patterns in model_rules.items()]


def shortcut_rule(spec: FreezeSpec, index: ModelIndex) -> Optional[RuleSpec]:
    """Expand ``until`` or ``stages`` into a rule over the frozen prefix (None if neither is set)."""
    if spec.until is not None:
        return RuleSpec(key=f"{spec.key}.until", select=tuple(_until_names(spec, index)),
                        method=spec.method, bn=spec.bn, ln=spec.ln)
    if spec.stages is not None:
        return RuleSpec(key=f"{spec.key}.stages", select=tuple(_stages_units(spec, index)),
                        method=spec.method, bn=spec.bn, ln=spec.ln)
    return None


def _until_names(spec: FreezeSpec, index: ModelIndex) -> List[str]:
    names = _prefix_names(spec, index)
    branch = index.branch_of(spec.until)
    if index.branches and branch is None:
        raise ConfigError(f"{spec.key}.until", f"'{spec.until}' is not inside one of the models that run side by side "
                                               f"({', '.join(index.branches)})",
                          f"name a stage or sublayer of one of them, e.g. until: {index.branches[-1]}.stage2")
    # side-by-side models: the prefix is the one of the model 'until' lies in
    return [n for n in names if branch is None or is_under(n, branch)]


def _prefix_names(spec: FreezeSpec, index: ModelIndex) -> List[str]:
    until, key = spec.until, f"{spec.key}.until"
    if until in index.stages:
        return index.units_through(index.stages[until][-1])
    if until in index.units:
        return index.units_through(until)
    unit = next((u for u in index.units if is_under(until, u)), None)
    if unit is None or (until not in index.layers and until not in index.param_names):
        raise ConfigError(key, f"'{until}' is not a stage or sublayer of the model",
                          f"stages: {', '.join(index.stages) or '(none declared)'}; units: "
                          f"{', '.join(index.units[:12])}.{did_you_mean(until, index.all_names())}")
    # A sublayer inside a unit: the units before it, then the unit's parameters in
    # registration order up to and including the last one under ``until``.
    before = index.units[: index.units.index(unit)]
    inside = index.params_of_unit[unit]
    last = max((i for i, n in enumerate(inside) if is_under(n, until)), default=-1)
    return before + inside[: last + 1]


def _stages_units(spec: FreezeSpec, index: ModelIndex) -> List[str]:
    key, n = f"{spec.key}.stages", spec.stages
    trunk = index.trunk_stages
    if not index.stages:
        raise ConfigError(key, "the model declares no stages", "use until: <sublayer name> or rules instead")
    if index.branches:
        raise ConfigError(key, f"the model runs several models side by side ({', '.join(index.branches)}), so a "
                               f"number of stages is ambiguous",
                          f"use until: {index.branches[-1]}.<stage> (e.g. {next(reversed(index.stages))})")
    if n > len(trunk):
        raise ConfigError(key, f"{n} is more than the model's {len(trunk)} stages ({', '.join(trunk)})",
                          f"use a number from 0 to {len(trunk)}")
    chosen = [s for s in index.stages if s == "stem"] + trunk[:n]
    return [u for s in chosen for u in index.stages[s]]


def match_rule(rule: RuleSpec, index: ModelIndex, strict: bool) -> RuleMatch:
    """Select the parameters and BN layers of one rule; strict mode rejects empty patterns."""
    _check_types(rule, index, strict)
    selected = _match_all(rule.select, f"{rule.key}.select", index, strict)
    excluded = set(_match_all(rule.exclude, f"{rule.key}.exclude", index, strict))
    params = [n for n in selected if n not in excluded and _type_ok(rule, index, index.owner[n])]
    layers = _ordered_unique(index.owner[n] for n in params)
    bn_layers = [n for n in index.bn_layers if n in layers or _paramless_bn_selected(rule, index, n)]
    if strict and not params and not bn_layers:
        raise ConfigError(rule.key, f"the rule matches nothing after exclude {list(rule.exclude)} "
                                    f"and types {list(rule.types)}",
                          "loosen exclude/types or remove the rule")
    return RuleMatch(rule=rule, params=params, layers=layers, bn_layers=bn_layers)


def _match_all(patterns: Sequence[str], key: str, index: ModelIndex, strict: bool) -> List[str]:
    names: List[str] = []
    for i, pattern in enumerate(patterns):
        found = index.match_params(pattern)
        if not found and not index.match_layers(pattern):
            if strict:
                raise unmatched_error(f"{key}.{i}", pattern, index)
            logger.warning("%s.%d: pattern %r matches nothing (strict: false, ignored)", key, i, pattern)
        names.extend(found)
    return _ordered_unique(names, order=index.param_names)


def _check_types(rule: RuleSpec, index: ModelIndex, strict: bool) -> None:
    present = set().union(*(index.layer_types(n) for n in index.layer_names)) if index.layer_names else set()
    for i, t in enumerate(rule.types):
        if t not in present:
            message = f"no layer of type {t!r} in the model"
            hint = f"types present: {', '.join(sorted(index.all_type_names()))}.{did_you_mean(t, present)}"
            if strict:
                raise ConfigError(f"{rule.key}.types.{i}", message, hint)
            logger.warning("%s.types.%d: %s (%s)", rule.key, i, message, hint)


def _type_ok(rule: RuleSpec, index: ModelIndex, layer_name: str) -> bool:
    return not rule.types or bool(set(rule.types) & index.layer_types(layer_name))


def _paramless_bn_selected(rule: RuleSpec, index: ModelIndex, bn_name: str) -> bool:
    """A BN layer without affine parameters is selected through its sublayer name."""
    if any(index.owner[p] == bn_name for p in index.param_names):
        return False
    hit = any(bn_name in index.match_layers(p) for p in rule.select)
    miss = any(bn_name in index.match_layers(p) for p in rule.exclude)
    return hit and not miss and _type_ok(rule, index, bn_name)


def _ordered_unique(names, order: Optional[Sequence[str]] = None) -> List[str]:
    seen = dict.fromkeys(names)
    if order is None:
        return list(seen)
    return [n for n in order if n in seen]


def decide(spec: FreezeSpec, index: ModelIndex, model_rules: Sequence[RuleSpec] = (),
           peft_rules: Sequence[RuleSpec] = ()) -> Tuple[Dict[str, Decision], Dict[str, Tuple[str, str]], List[RuleMatch]]:
    """Apply the rules in order: the model's own (``Arch.freeze_params_list``), the
    ``until`` / ``stages`` shortcut, the PEFT rule, then ``Freeze.rules``.

    Returns (parameter decisions, BN layer -> (policy, rule key), per-rule matches).
    """
    shortcut = [r for r in [shortcut_rule(spec, index)] if r is not None]
    rules = list(model_rules) + shortcut + list(peft_rules) + list(spec.rules)
    decisions = {n: Decision() for n in index.param_names}
    bn: Dict[str, Tuple[str, str]] = {}
    matches: List[RuleMatch] = []
    for rule in rules:
        match = match_rule(rule, index, spec.strict)
        matches.append(match)
        for layer in match.bn_layers:
            _set_bn(bn, layer, rule, spec.strict)
        for name in match.params:
            _set_param(decisions, name, _wanted(rule, index, index.owner[name], match), spec.strict)
    return decisions, bn, matches


def _wanted(rule: RuleSpec, index: ModelIndex, owner: str, match: RuleMatch) -> Decision:
    affine_trains = ((owner in match.bn_layers and rule.bn in AFFINE_TRAINABLE)
                     or (owner in index.norm_layers and rule.ln == "train"))
    if affine_trains:
        return Decision(frozen=False, method=None, rule=rule.key, mult=rule.lr_mult)
    return Decision(frozen=True, method=rule.method, rule=rule.key)


def _set_param(decisions: Dict[str, Decision], name: str, wanted: Decision, strict: bool) -> None:
    current = decisions[name]
    if current.rule is not None and (current.frozen, current.method) != (wanted.frozen, wanted.method):
        _conflict(wanted.rule, current.rule, f"parameter '{name}'", current.describe(), wanted.describe(), strict)
    decisions[name] = wanted


def _set_bn(bn: Dict[str, Tuple[str, str]], layer: str, rule: RuleSpec, strict: bool) -> None:
    if layer in bn and bn[layer][0] != rule.bn:
        _conflict(rule.key, bn[layer][1], f"BN layer '{layer}'", f"bn: {bn[layer][0]}", f"bn: {rule.bn}", strict)
    bn[layer] = (rule.bn, rule.key)


def _conflict(key: str, other: str, what: str, theirs: str, ours: str, strict: bool) -> None:
    message = f"disagrees with {other} on {what}: {theirs} there, {ours} here"
    hint = "make the selections disjoint with exclude, or give both the same method and bn"
    if strict:
        raise ConfigError(key, message, hint)
    logger.warning("%s: %s (strict: false, the later rule wins)", key, message)
