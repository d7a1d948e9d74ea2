"""A read-only index of a model's names: parameters, sublayers, BN layers, stages, forward order.

Forward order
-------------
Models declare ``stages``: an ordered mapping stage name -> list of sublayer-name prefixes
("units") in forward order, e.g. ``{"stem": ["stem", "max_pool"], "stage1": ["blocks.0",
"blocks.1"], "head": ["avg_pool", "flatten", "fc"]}``.  The flattened unit list is the
model's forward order.  Top-level sublayers or root parameters no stage lists are appended
after the declared units (in registration order): they are treated as running last (necks,
extra heads).  A model without ``stages`` gets one unit per top-level child, in
registration order.  Inside one unit, order is registration (pre-order) order.

Name matching
-------------
A pattern matches a parameter when it is a stage name (all parameters of its units), or a
``fnmatch`` glob matching the parameter name or the name of any sublayer above it
(``blocks.0`` selects every parameter of ``blocks.0``; ``*.bn.*`` selects BN parameters).
"""
from __future__ import annotations

from collections import OrderedDict
from fnmatch import fnmatchcase
from typing import Dict, List, Optional, Sequence, Set

import paddle

STEM, HEAD = "stem", "head"


def unwrap(model: paddle.nn.Layer) -> paddle.nn.Layer:
    """Return the user model inside a ``paddle.DataParallel`` wrapper (names stay unprefixed)."""
    return model._layers if isinstance(model, paddle.DataParallel) else model


def is_batch_norm(layer: paddle.nn.Layer) -> bool:
    """True for paddle BatchNorm layers (BatchNorm, BatchNorm1D/2D/3D, SyncBatchNorm)."""
    return all(hasattr(layer, a) for a in ("_mean", "_variance", "_use_global_stats"))


def is_layer_norm(layer: paddle.nn.Layer) -> bool:
    """True for normalisation layers without running statistics (LayerNorm, GroupNorm)."""
    return isinstance(layer, (paddle.nn.LayerNorm, paddle.nn.GroupNorm))


def _ancestors(param_name: str) -> List[str]:
    """``a.b.c.weight`` -> ``["a", "a.b", "a.b.c"]`` (the sublayers that hold the parameter)."""
    parts = param_name.split(".")[:-1]
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def is_under(name: str, prefix: str) -> bool:
    """True when ``name`` is ``prefix`` or lies below it (``blocks.0.conv`` under ``blocks.0``)."""
    return name == prefix or name.startswith(prefix + ".")


class ModelIndex:
    """Names and structure of ``model`` needed to resolve a freeze plan."""

    def __init__(self, model: paddle.nn.Layer):
        model = unwrap(model)
        self.layers: Dict[str, paddle.nn.Layer] = OrderedDict(model.named_sublayers())
        self.layer_names: List[str] = list(self.layers)
        self.bn_layers: List[str] = [n for n, layer in self.layers.items() if is_batch_norm(layer)]
        self.norm_layers: List[str] = [n for n, layer in self.layers.items() if is_layer_norm(layer)]
        # Paddle stores BN running statistics as (non-trainable) parameters; they are state
        # governed by the BN policy, not parameters to freeze, so they are left out here.
        stats = {id(t) for n in self.bn_layers for t in (self.layers[n]._mean, self.layers[n]._variance)}
        self.param_names: List[str] = [n for n, p in model.named_parameters() if id(p) not in stats]
        self.owner: Dict[str, str] = {n: ".".join(n.split(".")[:-1]) for n in self.param_names}
        self.stages: Dict[str, List[str]] = self._read_stages(model)
        # sub-models that run side by side (DistillationModel): forward order holds within each
        self.branches: List[str] = [str(b) for b in getattr(model, "branches", None) or []]
        self.units: List[str] = self._forward_units(model)
        self.unit_of: Dict[str, Optional[str]] = {n: self._find_unit(n) for n in self.param_names}
        self.params_of_unit: Dict[str, List[str]] = {u: [n for n in self.param_names if self.unit_of[n] == u]
                                                     for u in self.units}

    # -- structure ---------------------------------------------------------------------------
    def _read_stages(self, model: paddle.nn.Layer) -> Dict[str, List[str]]:
        declared = getattr(model, "stages", None)
        if not declared:
            return OrderedDict()
        stages: Dict[str, List[str]] = OrderedDict()
        known = set(self.layer_names) | set(self.param_names)
        for stage, units in declared.items():
            units = [units] if isinstance(units, str) else list(units)
            for unit in units:
                if unit not in known:
                    # A model bug, not a user mistake: the metadata must name real sublayers.
                    raise ValueError(f"{type(model).__name__}.stages['{stage}'] names '{unit}', "
                                     f"which is not a sublayer or parameter of the model")
            stages[str(stage)] = units
        return stages

    def _forward_units(self, model: paddle.nn.Layer) -> List[str]:
        declared = [u for units in self.stages.values() for u in units]
        top_level = [n for n in self.layer_names if "." not in n]
        root_params = [n for n in self.param_names if "." not in n]
        extra = [n for n in top_level + root_params
                 if not any(is_under(n, u) or is_under(u, n) for u in declared)]
        return declared + extra

    def _find_unit(self, param_name: str) -> Optional[str]:
        for unit in self.units:
            if is_under(param_name, unit):
                return unit
        return None

    def branch_of(self, name: str) -> Optional[str]:
        """The branch (side-by-side sub-model) ``name`` lies in, or None."""
        return next((b for b in self.branches if is_under(name, b)), None)

    @property
    def trunk_stages(self) -> List[str]:
        """Declared stages other than the stem and the head, in forward order."""
        return [s for s in self.stages if s not in (STEM, HEAD)]

    def units_through(self, last_unit: str) -> List[str]:
        """Units from the first one up to and including ``last_unit``."""
        return self.units[: self.units.index(last_unit) + 1]

    def params_in_units(self, units: Sequence[str]) -> List[str]:
        """Parameters of ``units`` in model order."""
        chosen = set(units)
        return [n for n in self.param_names if self.unit_of[n] in chosen]

    def param_units(self) -> List[str]:
        """Units that hold at least one parameter, in forward order."""
        return [u for u in self.units if self.params_of_unit[u]]

    def layer_types(self, layer_name: str) -> Set[str]:
        """Class names (whole MRO) of a sublayer; '' is the model itself."""
        layer = self.layers.get(layer_name)
        return {c.__name__ for c in type(layer).__mro__} if layer is not None else set()

    def all_type_names(self) -> Set[str]:
        """Every layer class name present in the model."""
        return {type(layer).__name__ for layer in self.layers.values()}

    # -- matching ----------------------------------------------------------------------------
    def match_params(self, pattern: str) -> List[str]:
        """Parameter names selected by ``pattern`` (stage name, glob over parameter or sublayer names)."""
        if pattern in self.stages:
            return self.params_in_units(self.stages[pattern])
        return [n for n in self.param_names
                if fnmatchcase(n, pattern) or any(fnmatchcase(a, pattern) for a in _ancestors(n))]

    def match_layers(self, pattern: str) -> List[str]:
        """Sublayer names selected by ``pattern`` (the sublayer itself or one above it matches)."""
        if pattern in self.stages:
            units = self.stages[pattern]
            return [n for n in self.layer_names if any(is_under(n, u) for u in units)]
        return [n for n in self.layer_names
                if fnmatchcase(n, pattern) or any(fnmatchcase(a, pattern) for a in _ancestors(n + ".x"))]

    def all_names(self) -> List[str]:
        """Every name a pattern may refer to: stages, sublayers, parameters (for did-you-mean)."""
        return list(self.stages) + self.layer_names + self.param_names

    def bn_buffers(self, layer_name: str) -> List[str]:
        """State-dict keys of a BN layer's running statistics."""
        return [f"{layer_name}._mean", f"{layer_name}._variance"]
