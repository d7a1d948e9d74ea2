"""Load ``.pdparams`` weights into a model by name, skipping tensors whose shape differs.

Skipping shape mismatches is what makes fine-tuning work: an ImageNet ``fc`` (1000 classes)
is left at its fresh initialisation when the model has another ``class_num``.  Everything
that did not load is reported, never hidden, and :func:`coverage_shortfall` says when the
file covers too little of the model (``Global.min_weights_coverage``, docs/reliability.md).
Files are read with :func:`ppfreeze.utils.safe_load.load_file`: a crafted file runs no code.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set, Tuple, Union

import numpy as np
import paddle
import paddle.nn as nn

from ..config.errors import ConfigError
from ..utils.safe_load import load_file

SUFFIX = ".pdparams"
COVERAGE_KEY = "Global.min_weights_coverage"
ALL_BUT_HEAD, ALL = "all_but_head", "all"


@dataclass
class LoadReport:
    """What ``load_pretrained`` did: names loaded, missing from the file, unexpected in the
    file, and shape-mismatched ``(name, file_shape, model_shape)`` (skipped)."""
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[Tuple[str, tuple, tuple]] = field(default_factory=list)
    path: str = ""

    def summary(self, max_names: int = 8) -> str:
        """One log-ready paragraph; long name lists are shortened."""
        total = len(self.loaded) + len(self.missing) + len(self.mismatched)
        lines = [f"loaded {len(self.loaded)}/{total} tensors" + (f" from {self.path}" if self.path else "")]
        if self.mismatched:
            shapes = [f"{n} (file {list(f)} vs model {list(m)})" for n, f, m in self.mismatched]
            lines.append(f"skipped {len(shapes)} with another shape: {_shorten(shapes, max_names)}")
        if self.missing:
            lines.append(f"{len(self.missing)} not in the file (left as initialised): "
                         f"{_shorten(self.missing, max_names)}")
        if self.unexpected:
            lines.append(f"{len(self.unexpected)} in the file but not in the model (ignored): "
                         f"{_shorten(self.unexpected, max_names)}")
        return "; ".join(lines)


def _shorten(names: List[str], limit: int) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... (+{len(names) - limit} more)" if len(names) > limit else "")


def resolve_params_path(path: str, key: str = "Global.pretrained_model") -> str:
    """The ``.pdparams`` file meant by ``path`` (PaddleClas configs usually omit the suffix)."""
    if not isinstance(path, str) or not path:
        raise ConfigError(key, f"expected a path to a {SUFFIX} file, got {path!r}")
    candidates = [path] if path.endswith(SUFFIX) else [path + SUFFIX, path]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    hint = "it is a directory; name the file inside it" if os.path.isdir(path) else \
        f"check the path; it may be given with or without the {SUFFIX} suffix"
    raise ConfigError(key, f"weights file not found: tried {', '.join(candidates)}", hint)


def state_dict_from_file(path: str, key: str = "Global.pretrained_model") -> Dict[str, np.ndarray]:
    """Read a ``.pdparams`` file (path with or without the suffix) as ``{name: ndarray}``."""
    resolved = resolve_params_path(path, key)
    state = load_file(resolved, "weights file")   # DataIntegrityError for crafted or damaged files
    if not isinstance(state, dict):
        raise ConfigError(key, f"{resolved} holds a {type(state).__name__}, expected a dict of named tensors")
    return {name: np.asarray(value) for name, value in state.items()}


def match_state_dict(model_state: Dict[str, Any], file_state: Dict[str, np.ndarray]) -> LoadReport:
    """Compare names and shapes; no tensor is touched."""
    report = LoadReport()
    for name, tensor in model_state.items():
        if name not in file_state:
            report.missing.append(name)
            continue
        file_shape, model_shape = tuple(file_state[name].shape), tuple(tensor.shape)
        if file_shape == model_shape:
            report.loaded.append(name)
        else:
            report.mismatched.append((name, file_shape, model_shape))
    report.unexpected = [name for name in file_state if name not in model_state]
    return report


def load_pretrained(model: nn.Layer, path: str, key: str = "Global.pretrained_model") -> LoadReport:
    """Load the tensors of ``path`` whose name and shape match ``model``; report the rest.

    A file that shares no name with the model is a ConfigError (wrong architecture, or
    PaddleClas's legacy ``conv1_weights`` naming), since loading nothing is never intended.
    """
    file_state = state_dict_from_file(path, key)
    adapt = getattr(model, "adapt_state_dict", None)
    if adapt is not None:  # e.g. ResNet50_metabin reads a plain ResNet50 file, as PaddleClas does
        file_state = adapt(file_state)
    model_state = model.state_dict()
    report = match_state_dict(model_state, file_state)
    report.path = resolve_params_path(path, key)
    if file_state and not report.loaded and not report.mismatched:
        raise ConfigError(key, f"no tensor name in {report.path} matches the model {type(model).__name__}",
                          f"file has e.g. {list(file_state)[:3]}, model expects e.g. {list(model_state)[:3]}; "
                          f"are these weights for another architecture or PaddleClas's legacy naming?")
    # set_value insists on the parameter's dtype; files saved under AMP hold float16
    to_load = {name: paddle.to_tensor(file_state[name]).astype(model_state[name].dtype) for name in report.loaded}
    with warnings.catch_warnings():
        # paddle warns once per tensor left out; the report already lists them
        warnings.filterwarnings("ignore", message="Skip loading for")
        model.set_state_dict(to_load)
    return report


def parse_coverage(value: Any) -> Union[str, float]:
    """``Global.min_weights_coverage``: ``all_but_head`` (default), ``all`` or a share in [0, 1]."""
    if value is None:
        return ALL_BUT_HEAD
    if value in (ALL_BUT_HEAD, ALL):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    raise ConfigError(COVERAGE_KEY, f"expected {ALL_BUT_HEAD}, {ALL} or a share between 0 and 1, got {value!r}",
                      f"{ALL_BUT_HEAD}: every tensor outside the model's head stage must load; 0.5: half of the "
                      f"model's values; 0 disables the check")


def head_keys(model: nn.Layer) -> Set[str]:
    """State-dict keys under the model's ``stages['head']`` units (empty if it declares none)."""
    units = list((getattr(model, "stages", None) or {}).get("head", []))
    return {k for k in model.state_dict() if any(k == u or k.startswith(u + ".") for u in units)}


def coverage_shortfall(model: nn.Layer, report: LoadReport, rule: Union[str, float]) -> Optional[str]:
    """Why ``report`` covers too little of ``model`` under ``rule`` (see :func:`parse_coverage`), or None."""
    state = model.state_dict()
    not_loaded = report.missing + [name for name, _, _ in report.mismatched]
    sizes = {name: int(np.prod(tensor.shape)) for name, tensor in state.items()}
    share = sum(sizes[n] for n in report.loaded) / max(sum(sizes.values()), 1)
    covered = f"{report.path} covers {share:.1%} of the model's values ({len(report.loaded)}/{len(state)} tensors)"
    if rule == ALL and not_loaded:
        return f"{covered}; not loaded: {_shorten(not_loaded, 8)}"
    if rule == ALL_BUT_HEAD:
        head = head_keys(model)
        outside = [n for n in not_loaded if n not in head]
        if outside:
            return (f"{covered}; {len(outside)} tensors outside the head stage did not load "
                    f"(missing or another shape): {_shorten(outside, 8)}")
    if isinstance(rule, float) and share < rule:
        return f"{covered}, less than the {rule:.0%} {COVERAGE_KEY} asks for"
    return None
