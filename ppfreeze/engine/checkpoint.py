"""PaddleClas-compatible checkpoints: ``<prefix>.pdparams`` / ``.pdopt`` / ``.pdstates``.

Differences from PaddleClas, on purpose:
- optimizer accumulators are keyed by *structured* parameter names (``fc.weight@moment1``)
  instead of Paddle's auto-generated ones (``linear_3.w_0_moment1_0``), so a resume survives
  unrelated model-code changes and a second model built in the same process;
- all three files are written through temporary files and renamed, and ``.pdstates``
  (written last) records a digest of the other two, so an interrupted save is detected and
  never silently resumed from.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

import paddle

from ..config.errors import ConfigError
from ..errors import DataIntegrityError
from ..utils.io import atomic_write, file_sha256

SUFFIXES = (".pdparams", ".pdopt", ".pdstates", ".pdema")
LR_KEY = "LR_Scheduler"


def _flat_params(optimizer: paddle.optimizer.Optimizer) -> List[paddle.Tensor]:
    params: List[Any] = []
    for p in optimizer._parameter_list:  # param groups are dicts with 'params'
        params.extend(p["params"] if isinstance(p, dict) else [p])
    return params


def ensure_accumulators(optimizer: paddle.optimizer.Optimizer) -> None:
    """Create the optimizer's accumulators now (Paddle creates them lazily at the first step)."""
    params = [p for p in _flat_params(optimizer) if not p.stop_gradient]
    block = paddle.static.default_main_program().global_block()
    optimizer._create_accumulators(block, params)


def _structured_names(model: paddle.nn.Layer) -> Dict[str, str]:
    """Paddle's internal ``param.name`` -> structured ``state_dict`` name."""
    return {p.name: n for n, p in model.named_parameters()}


def optimizer_state(optimizer: paddle.optimizer.Optimizer, model: paddle.nn.Layer,
                    lr_scheduler: Optional[Any] = None) -> Dict[str, Any]:
    """Optimizer accumulators keyed ``<structured name>@<accumulator>``, plus the LR state."""
    names = _structured_names(model)
    state: Dict[str, Any] = {}
    for acc_name, per_param in optimizer._accumulators.items():
        for pname, var in per_param.items():
            state[f"{names.get(pname, pname)}@{acc_name}"] = var
    if lr_scheduler is not None:
        state[LR_KEY] = lr_scheduler.state_dict()
    return state


def load_optimizer_state(optimizer: paddle.optimizer.Optimizer, model: paddle.nn.Layer,
                         state: Dict[str, Any], lr_scheduler: Optional[Any] = None, source: str = "",
                         strict: bool = True) -> None:
    """Restore accumulators saved by :func:`optimizer_state` into a freshly built optimizer.

    With ``strict`` (resume) a checkpoint that does not match the optimizer's parameters (e.g.
    a different Freeze state) is a ConfigError instead of Paddle's "Optimizer set error" at the
    first step. Without it (a schedule milestone) newly trainable parameters start fresh.
    """
    ensure_accumulators(optimizer)
    names = _structured_names(model)
    expected = []
    for acc_name, per_param in optimizer._accumulators.items():
        for pname, var in per_param.items():
            key = f"{names.get(pname, pname)}@{acc_name}"
            expected.append(key)
            if key not in state:
                if not strict:
                    continue
                raise ConfigError("Global.checkpoints", f"{source}: optimizer state has no entry '{key}'",
                                  "the checkpoint was written with another optimizer or Freeze state; "
                                  "resume with the same config, or start from it with Global.pretrained_model")
            value = state[key]
            var.set_value(value if isinstance(value, paddle.Tensor) else paddle.to_tensor(value))
    extra = sorted(set(state) - set(expected) - {LR_KEY})
    if extra and strict:
        raise ConfigError("Global.checkpoints", f"{source}: optimizer state has {len(extra)} entries this optimizer "
                                                f"does not use, e.g. {extra[:3]}",
                          "the checkpoint's Freeze state or optimizer differs from the config")
    if lr_scheduler is not None and LR_KEY in state:
        lr_scheduler.set_state_dict(state[LR_KEY])


def save_checkpoint(prefix: str, model_state: Dict[str, Any], opt_state: Optional[Dict[str, Any]],
                    states: Dict[str, Any], extra: Optional[Dict[str, Any]] = None) -> None:
    """Write ``prefix.pdparams`` (+ ``.pdopt``, + ``extra`` files such as ``.pdema``) and finally
    ``prefix.pdstates``, each atomically; ``.pdstates`` records the others' digests."""
    files = {".pdparams": model_state, ".pdopt": opt_state, **(extra or {})}
    digests = {}
    for suffix, obj in files.items():
        if obj is None:
            continue
        atomic_write(prefix + suffix, lambda tmp, obj=obj: paddle.save(obj, tmp))
        digests[suffix] = file_sha256(prefix + suffix)
    states = dict(states, file_digests=digests)
    atomic_write(prefix + ".pdstates", lambda tmp: paddle.save(states, tmp))


def strip_suffix(path: str) -> str:
    """Accept ``output/x/latest`` or ``output/x/latest.pdparams`` (PaddleClas habit)."""
    for s in SUFFIXES:
        if path.endswith(s):
            return path[: -len(s)]
    return path


def load_checkpoint(prefix: str, key: str = "Global.checkpoints") -> Dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` and verify it is complete."""
    prefix = strip_suffix(prefix)
    for s in (".pdparams", ".pdstates"):
        if not os.path.isfile(prefix + s):
            raise ConfigError(key, f"checkpoint file not found: {prefix + s}",
                              "give the prefix without suffix, e.g. output/ResNet50/latest")
    states = paddle.load(prefix + ".pdstates")
    for suffix, digest in states.get("file_digests", {}).items():
        if not os.path.isfile(prefix + suffix) or file_sha256(prefix + suffix) != digest:
            raise DataIntegrityError(prefix + suffix, "incomplete or modified after saving: it does not match the "
                                                      "digest its .pdstates recorded",
                                     "an earlier save was interrupted; resume from the previous epoch_N checkpoint")
    out = {"model": paddle.load(prefix + ".pdparams"), "states": states}
    for suffix, name in ((".pdopt", "optimizer"), (".pdema", "ema")):
        if suffix in states.get("file_digests", {}):
            out[name] = paddle.load(prefix + suffix)
    return out
