"""Gradual unfreezing: replay the milestones that start at or before an epoch.

The state of any epoch is rebuilt from the initial decisions, never updated in place, so
resuming before, at or after a milestone gives exactly the state a straight run had.
"""
from __future__ import annotations

import copy
from typing import Dict, List, Tuple

from ..config.errors import ConfigError
from .model_index import ModelIndex
from .rules import Decision, unmatched_error
from .spec import FreezeSpec, MilestoneSpec
from .state import AFFINE_FROZEN

Decisions = Dict[str, Decision]
BnPolicies = Dict[str, Tuple[str, str]]


def replay(spec: FreezeSpec, index: ModelIndex, decisions: Decisions, bn: BnPolicies,
           epoch: int) -> Tuple[Decisions, BnPolicies]:
    """Return copies of ``decisions`` / ``bn`` with every milestone of epoch <= ``epoch`` applied."""
    decisions, bn = copy.deepcopy(decisions), dict(bn)
    for milestone in spec.schedule:
        if milestone.epoch <= epoch:
            _unfreeze(milestone, index, decisions, bn, spec.strict)
    return decisions, bn


def _targets(milestone: MilestoneSpec, index: ModelIndex, strict: bool) -> Tuple[List[str], List[str]]:
    params: List[str] = []
    layers: List[str] = []
    for i, pattern in enumerate(milestone.unfreeze):
        found, found_layers = index.match_params(pattern), index.match_layers(pattern)
        if strict and not found and not found_layers:
            raise unmatched_error(f"{milestone.key}.unfreeze.{i}", pattern, index)
        params.extend(found)
        layers.extend(found_layers)
    return params, layers


def _unfreeze(milestone: MilestoneSpec, index: ModelIndex, decisions: Decisions, bn: BnPolicies,
              strict: bool) -> None:
    params, layers = _targets(milestone, index, strict)
    new_bn = milestone.bn or "train"
    touched = set(params) | set(layers)
    changed = 0
    for layer in index.bn_layers:
        if layer in touched and bn.get(layer, ("train",))[0] != "train":
            changed += bn[layer][0] != new_bn
            bn[layer] = (new_bn, milestone.key)
    for name in dict.fromkeys(params):
        d = decisions[name]
        stays_frozen = index.owner[name] in index.bn_layers and new_bn in AFFINE_FROZEN
        if d.frozen and not stays_frozen:
            decisions[name] = Decision(frozen=False, method=None, rule=milestone.key, mult=milestone.lr_mult)
            changed += 1
    if strict and not changed:
        raise ConfigError(f"{milestone.key}.unfreeze",
                          f"{list(milestone.unfreeze)} unfreezes nothing at epoch {milestone.epoch}: "
                          f"the parameters it matches are already trainable",
                          "name frozen stages/sublayers (see the freeze report), or drop the milestone")
