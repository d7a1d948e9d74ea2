"""What a checkpoint holds, and reading it back safely.

Files (PaddleClas's names): ``<name>.pdparams`` (model), ``.pdopt`` (optimizer + LR schedule),
``.pdema`` (weight EMA, when configured) and ``.pdstates`` (epoch, global step, best metric, RNG
state, Freeze state, and the sha256 of each other file). Where they live and how a save
becomes visible atomically: :mod:`ppfreeze.engine.checkpoint_store`.

PaddleClas's own checkpoints (``{metric, epoch}`` in ``.pdstates``, optimizer state keyed by
Paddle's generated names) are read too: :mod:`ppfreeze.engine.paddleclas_ckpt` maps them.

Differences from PaddleClas, on purpose:
- optimizer accumulators are keyed by *structured* parameter names (``fc.weight@moment1``)
  instead of Paddle's auto-generated ones (``linear_3.w_0_moment1_0``), so a resume survives
  unrelated model-code changes and a second model built in the same process;
- every file is read with :func:`ppfreeze.utils.safe_load.load_file` (no code runs, whatever the
  file holds), and the digests are checked before anything else is deserialised: the set's
  directory name authenticates ``.pdstates``, which authenticates the rest;
- files are still written with ``paddle.save`` (pickle), so ``paddle.load`` and PaddleClas's
  tools read them as before; the RNG state is stored as plain numbers, not as Paddle objects.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import paddle

from ..arch.pretrained import match_state_dict
from ..config.errors import ConfigError
from ..errors import DataIntegrityError
from ..utils.io import file_sha256
from ..utils.safe_load import NAME_TABLE_KEY, GeneratorStateRecord, load_file
from .checkpoint_store import STATES, SUFFIXES, CheckpointFiles, CheckpointStore, locate

logger = logging.getLogger("ppfreeze")

LR_KEY = "LR_Scheduler"
FORMAT_VERSION = 2


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


ParamOwners = Union[paddle.nn.Layer, Sequence[paddle.nn.Layer]]


def _structured_names(owners: ParamOwners) -> Dict[str, str]:
    """Paddle's internal ``param.name`` -> structured ``state_dict`` name, over the model and the
    other layers whose parameters the optimizer holds (a loss with parameters: its keys, such as
    ``loss_func.1.loss_func.generation.0.weight``, never collide with the model's)."""
    layers = [owners] if isinstance(owners, paddle.nn.Layer) else list(owners)
    return {p.name: n for layer in layers for n, p in layer.named_parameters()}


def optimizer_state(optimizer: paddle.optimizer.Optimizer, model: ParamOwners,
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


def load_optimizer_state(optimizer: paddle.optimizer.Optimizer, model: ParamOwners,
                         state: Dict[str, Any], lr_scheduler: Optional[Any] = None, source: str = "",
                         strict: bool = True) -> None:
    """Restore accumulators saved by :func:`optimizer_state` into a freshly built optimizer.

    With ``strict`` (resume) a checkpoint that does not match the optimizer's parameters (e.g.
    a different Freeze state) is a ConfigError instead of Paddle's "Optimizer set error" at the
    first step. Without it (a schedule milestone) newly trainable parameters start fresh.
    """
    expected = []
    for key, var in _accumulators(optimizer, model):
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


def _accumulators(optimizer: paddle.optimizer.Optimizer, model: ParamOwners) -> List[Tuple[str, Any]]:
    """``(<structured name>@<accumulator>, tensor)`` of every accumulator (created now if needed)."""
    ensure_accumulators(optimizer)
    names = _structured_names(model)
    return [(f"{names.get(pname, pname)}@{acc_name}", var)
            for acc_name, per_param in optimizer._accumulators.items() for pname, var in per_param.items()]


def optimizer_keys(optimizer: paddle.optimizer.Optimizer, model: ParamOwners) -> List[str]:
    """The ``<structured name>@<accumulator>`` keys :func:`load_optimizer_state` fills for ``optimizer``."""
    return [key for key, _ in _accumulators(optimizer, model)]


def rng_state_data() -> List[List[Any]]:
    """``paddle.get_rng_state()`` as plain numbers (``[device, seed, offset, state]`` per generator)."""
    return [list(state.__getstate__()) for state in paddle.get_rng_state()]


def restore_rng_state(saved: Any) -> None:
    """Restore what :func:`rng_state_data` wrote (or an earlier checkpoint's recorded ``GeneratorState``)."""
    from paddle.base.core import GeneratorState
    states = []
    for entry in saved:
        values = entry.state if isinstance(entry, GeneratorStateRecord) else entry
        state = GeneratorState.__new__(GeneratorState)  # Paddle defines no constructor; pickle does the same
        state.__setstate__(tuple(values))
        states.append(state)
    paddle.set_rng_state(states)


def write_checkpoint(store: CheckpointStore, epoch: int, model_state: Dict[str, Any],
                     opt_state: Optional[Dict[str, Any]], states: Dict[str, Any],
                     extra: Optional[Dict[str, Any]] = None) -> str:
    """Write one checkpoint set (``.pdparams``, ``.pdopt``, ``extra`` files such as ``.pdema``, then
    ``.pdstates`` with their digests) into ``store``; returns its id. Nothing is visible under a
    name until ``store.stage(names, id)`` and ``store.commit()``."""
    files = {".pdparams": model_state, ".pdopt": opt_state, **(extra or {})}

    def write(base: str) -> None:
        digests = {}
        for suffix, obj in files.items():
            if obj is not None:
                paddle.save(obj, base + suffix)
                digests[suffix] = file_sha256(base + suffix)
        paddle.save(dict(states, file_digests=digests), base + STATES)
    return store.write_set(write, epoch)


def save_checkpoint(prefix: str, model_state: Dict[str, Any], opt_state: Optional[Dict[str, Any]],
                    states: Dict[str, Any], extra: Optional[Dict[str, Any]] = None) -> None:
    """Write and commit checkpoint ``<dir>/<name>`` in one step (see :func:`write_checkpoint`)."""
    store = CheckpointStore(os.path.dirname(os.path.abspath(prefix)))
    set_id = write_checkpoint(store, int(states.get("epoch", 0)), model_state, opt_state, states, extra)
    store.stage([os.path.basename(prefix)], set_id)
    store.commit()


def strip_suffix(path: str) -> str:
    """Accept ``output/x/latest`` or ``output/x/latest.pdparams`` (PaddleClas habit)."""
    for s in SUFFIXES:
        if path.endswith(s):
            return path[: -len(s)]
    return path


def read_states(found: CheckpointFiles) -> Dict[str, Any]:
    """The checkpoint's ``.pdstates``, its digest checked first when its set records one."""
    path = found.files[STATES]
    if found.states_digest is not None and not file_sha256(path).startswith(found.states_digest):
        raise DataIntegrityError(found.prefix + STATES, f"{_real(found.prefix + STATES, path)}does not match the "
                                                        f"digest its checkpoint directory is named after: it was "
                                                        f"damaged after saving", "resume from another checkpoint "
                                                                   "(Global.checkpoints: auto picks the newest intact one)")
    states = load_file(path, "checkpoint file")
    if not isinstance(states, dict):
        raise DataIntegrityError(path, f"holds a {type(states).__name__}, expected the dict a checkpoint's "
                                       f".pdstates holds")
    return states


def _real(shown: str, path: Optional[str]) -> str:
    """``(file <real path>) `` when the file behind a checkpoint name lives elsewhere (a set)."""
    if path is None:
        return "the file is missing; it "
    return "" if os.path.abspath(shown) == os.path.abspath(path) else f"its file {path} "


def verify_digests(found: CheckpointFiles, states: Dict[str, Any]) -> None:
    """Every file ``.pdstates`` lists must exist and match its sha256 (checked before reading it)."""
    for suffix, digest in states.get("file_digests", {}).items():
        path = found.files.get(suffix)
        if path is None or file_sha256(path) != digest:
            raise DataIntegrityError(found.prefix + suffix, "incomplete or modified after saving: "
                                     f"{_real(found.prefix + suffix, path)}does not match the digest its .pdstates "
                                     f"recorded",
                                     "an earlier save was interrupted; resume from another checkpoint "
                                     "(Global.checkpoints: auto picks the newest intact one)")


def load_checkpoint(prefix: str, key: str = "Global.checkpoints") -> Dict[str, Any]:
    """Read checkpoint ``prefix`` (digests first, then each file with the safe loader).

    Returns ``{"model", "states"[, "optimizer"][, "ema"]}`` with numpy arrays as values.
    """
    prefix = strip_suffix(prefix)
    found = locate(prefix)
    for suffix in (".pdparams", STATES):
        if suffix not in found.files:
            raise ConfigError(key, f"checkpoint file not found: {prefix + suffix}",
                              "give the prefix without suffix, e.g. output/ResNet50/latest, or auto")
    states = read_states(found)
    verify_digests(found, states)
    foreign = is_paddleclas_states(states)   # its optimizer state is keyed by the files' name tables
    out = {"model": load_file(found.files[".pdparams"], "checkpoint file", keep_name_table=foreign), "states": states}
    for suffix, name in ((".pdopt", "optimizer"), (".pdema", "ema")):
        if suffix in found.files and (suffix in states.get("file_digests", {}) or "file_digests" not in states):
            out[name] = load_file(found.files[suffix], "checkpoint file", keep_name_table=foreign)
    if foreign:
        out["name_tables"] = {name: out[name].pop(NAME_TABLE_KEY, None) for name in ("model", "ema")
                              if isinstance(out.get(name), dict)}
    return out


def is_paddleclas_states(states: Dict[str, Any]) -> bool:
    """True for the ``.pdstates`` PaddleClas writes: ``{"metric": ..., "epoch": N}`` and nothing else."""
    return "epoch" in states and set(states) <= {"metric", "epoch"}


def check_resumable(path: str, data: Dict[str, Any], arch: str, model_state: Dict[str, Any], epochs: int) -> None:
    """A clear ConfigError for every checkpoint a run of ``arch`` for ``epochs`` cannot continue from.

    Args:
        path: the checkpoint's prefix (for messages).
        data: what :func:`load_checkpoint` returned.
        arch: ``Arch.name`` of the run.
        model_state: the run's model ``state_dict()`` (names and shapes are compared).
        epochs: ``Global.epochs``.
    """
    states, key = data["states"], "Global.checkpoints"
    if "freeze" not in states:
        raise ConfigError(key, f"{path} is not a ppfreeze training checkpoint (its .pdstates holds no training "
                               f"state, and not PaddleClas's {{metric, epoch}} either)",
                          f"start from its weights instead: -o Global.pretrained_model={path}")
    if states.get("weights", "model") != "model":
        raise ConfigError(key, f"{path} holds the EMA weights, not the trained ones: a run cannot resume from it",
                          "resume from latest or epoch_N (or Global.checkpoints=auto)")
    if states.get("arch") not in (None, arch):
        raise ConfigError(key, f"{path} was saved by a {states['arch']} model, but Arch.name is {arch}",
                          f"resume with the Arch it was trained with, or start a new run from its weights "
                          f"with -o Global.pretrained_model={path}")
    check_weights_fit(path, arch, model_state, data["model"])
    if "optimizer" not in data:
        raise ConfigError(key, f"{path}.pdopt is missing: cannot resume the optimizer",
                          "to fine-tune from weights only, use Global.pretrained_model instead")
    check_epochs_left(path, states["epoch"], epochs)


def check_weights_fit(path: str, arch: str, model_state: Dict[str, Any], weights: Dict[str, Any]) -> None:
    """The checkpoint's weights must have exactly the model's names and shapes (a ConfigError otherwise)."""
    fit = match_state_dict(model_state, weights)
    if fit.missing or fit.unexpected or fit.mismatched:
        fit.path = path
        raise ConfigError("Global.checkpoints", f"{path} does not fit the model Arch builds ({arch}): "
                                                f"{fit.summary(4)}",
                          "resume with the Arch section it was trained with (same model, class_num and "
                          "arguments), or start a new run from its weights with Global.pretrained_model")


def check_epochs_left(path: str, epoch: int, epochs: int) -> None:
    """``Global.epochs`` must be above the checkpoint's last finished epoch."""
    if epoch >= epochs:
        raise ConfigError("Global.epochs", f"is {epochs}, and {path} already finished epoch {epoch}: "
                                           f"there is nothing left to train",
                          f"raise Global.epochs above {epoch} to train more")


def is_training_checkpoint(name: str, found: CheckpointFiles, states: Dict[str, Any]) -> bool:
    """True when a run can resume from it: ppfreeze's states, optimizer state, the trained weights."""
    return ("freeze" in states and ".pdopt" in found.files and name != "best_model_ema"
            and states.get("weights", "model") == "model")


def resumable_checkpoints(output_dir: str) -> List[Tuple[str, Dict[str, Any]]]:
    """``(prefix, states)`` of the checkpoints a run in ``output_dir`` can resume from, newest first.

    Newest = most global steps (then epochs); ``latest`` wins a tie. Damaged ``.pdstates`` files
    are skipped with a warning; the other files' digests are checked when one is loaded.
    """
    store = CheckpointStore(output_dir)
    found = []
    for name in store.names():
        files = locate(store.prefix(name))
        if STATES not in files.files:
            continue
        try:
            states = read_states(files)
        except DataIntegrityError as e:
            logger.warning("skipping checkpoint %s: %s", files.prefix, e)
            continue
        if is_training_checkpoint(name, files, states):
            found.append((files.prefix, states))
    found.sort(key=lambda item: (item[1].get("global_step", 0), item[1].get("epoch", 0),
                                 os.path.basename(item[0]) == "latest"), reverse=True)
    return found


def newest_checkpoint(output_dir: str) -> Optional[Tuple[str, int]]:
    """``(prefix, epoch)`` of the newest checkpoint a run could resume from, or None."""
    try:
        candidates = resumable_checkpoints(output_dir)
    except OSError:
        return None
    return (candidates[0][0], int(candidates[0][1].get("epoch", 0))) if candidates else None
