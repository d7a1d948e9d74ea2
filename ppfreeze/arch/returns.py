"""PaddleClas's ``return_patterns`` / ``return_stages``: a model that also returns inner features.

    Teacher: {name: PPLCNet_x2_5, return_patterns: [blocks3, blocks4, blocks5, blocks6]}
    Teacher: {name: ResNet34, return_patterns: ["blocks[2]", "blocks[15]"]}
    Teacher: {name: PPLCNet_x1_0, return_stages: true}        # the output of every trunk stage

The model then returns ``{"logits": <its usual output>, "<pattern>": <that sublayer's output>, ...}``
(keys as written; PaddleClas's ``blocks[2]`` is our sublayer ``blocks.2``), which distillation
losses read by ``key``. ``return_stages`` picks the last unit of each trunk stage (``true``: all,
an int or a list of ints: those stages, 0-based), as PaddleClas's ``stages_pattern`` does; it wins
over ``return_patterns`` when both are given, as in PaddleClas. Nothing is renamed; forward
hooks do the work, as callable objects, so the exporter's deep copy keeps them.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Dict, List, Optional

import paddle.nn as nn

from ..config.errors import ConfigError, did_you_mean

logger = logging.getLogger("ppfreeze")


class FeatureStore:
    """The features recorded during one forward pass, collected into the model's output."""

    def __init__(self) -> None:
        self.features: Dict[str, Any] = {}


class RecordOutput:
    """Forward post-hook of a returned sublayer: remember its output under ``key``."""

    def __init__(self, store: FeatureStore, key: str):
        self.store, self.key = store, key

    def __call__(self, layer: nn.Layer, inputs: Any, output: Any) -> None:
        self.store.features[self.key] = output


class CollectOutputs:
    """Forward post-hook of the model: ``{"logits": output, **recorded features}``."""

    def __init__(self, store: FeatureStore):
        self.store = store

    def __call__(self, layer: nn.Layer, inputs: Any, output: Any) -> Dict[str, Any]:
        out = {"logits": output}
        out.update(self.store.features)
        self.store.features = {}
        return out


def sublayer_name(pattern: str) -> str:
    """PaddleClas's ``blocks[2]`` -> our dotted ``blocks.2``."""
    return re.sub(r"\[(\d+)\]", r".\1", pattern)


def stage_patterns(model: nn.Layer) -> List[str]:
    """PaddleClas-style names of the last unit of each trunk stage (``blocks[2]``, ``blocks3``)."""
    stages = getattr(model, "stages", None) or {}
    units = [list(u)[-1] for s, u in stages.items() if s not in ("stem", "head") and u]
    return _as_patterns(units)


def _as_patterns(names: Any) -> List[str]:
    """Sublayer names written as PaddleClas writes them (``blocks.2.conv`` -> ``blocks[2].conv``)."""
    return [re.sub(r"\.(\d+)", r"[\1]", n) for n in names]


def attach_returns(model: nn.Layer, return_patterns: Optional[List[str]], return_stages: Any, key: str) -> None:
    """Make ``model`` return ``{"logits": ..., pattern: feature, ...}`` (no-op when both are empty)."""
    patterns = _patterns(model, return_patterns, return_stages, key)
    if not patterns:
        return
    layers = dict(model.named_sublayers())
    store = FeatureStore()
    for i, pattern in enumerate(patterns):
        name = sublayer_name(pattern)
        if name not in layers:
            raise ConfigError(f"{key}.return_patterns.{i}", f"model {type(model).__name__} has no sublayer '{pattern}'",
                              f"PaddleClas writes list items as blocks[2].{did_you_mean(pattern, _as_patterns(layers))}")
        layers[name].register_forward_post_hook(RecordOutput(store, pattern))
    model.register_forward_post_hook(CollectOutputs(store))


def _patterns(model: nn.Layer, return_patterns: Any, return_stages: Any, key: str) -> List[str]:
    if return_stages is not None and return_stages is not False:
        if return_patterns:
            logger.warning("%s: return_patterns is ignored because return_stages is set (as in PaddleClas)", key)
        stages = stage_patterns(model)
        if return_stages is True:
            return stages
        indices = [return_stages] if isinstance(return_stages, int) else return_stages
        if not isinstance(indices, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
            raise ConfigError(f"{key}.return_stages", f"expected true, a stage index or a list of them, got {return_stages!r}")
        bad = [i for i in indices if not 0 <= i < len(stages)]
        if bad:
            raise ConfigError(f"{key}.return_stages", f"stage indices {bad} are out of range: the model has "
                                                      f"{len(stages)} trunk stages ({', '.join(stages)})")
        return [stages[i] for i in indices]
    if not return_patterns:
        return []
    if not isinstance(return_patterns, list) or not all(isinstance(p, str) and p for p in return_patterns):
        raise ConfigError(f"{key}.return_patterns", f"expected a list of sublayer names, got {return_patterns!r}")
    return list(return_patterns)
