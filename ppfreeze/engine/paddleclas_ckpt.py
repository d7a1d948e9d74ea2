"""PaddleClas's checkpoint layout: resuming from it here, and writing it for PaddleClas to resume.

PaddleClas (``ppcls/utils/save_load.py``) saves checkpoint ``<prefix>`` as three files:

- ``.pdparams``: the model's ``state_dict`` (the same structured keys as ours), plus the name
  table ``paddle.save`` adds to every state dict: structured key -> ``param.name``, the name
  Paddle generated for the parameter in that process (``conv2d_0.w_0``). With an ``EMA``
  section the roles swap: ``.pdparams`` holds the EMA weights and ``.pdema`` the model's.
- ``.pdopt``: a list with one ``optimizer.state_dict()`` per optimizer: accumulators keyed
  ``<param.name>_<accumulator>_<n>`` (``conv2d_0.w_0_velocity_0``), ``LR_Scheduler``, and
  ``master_weights`` (float32 copies) under AMP O2.
- ``.pdstates``: ``{"metric": <that epoch's eval metric or 0.0>, "epoch": N}``. No global step,
  RNG state or best metric; PaddleClas resets the metric to 0 when it resumes.

Reading uses the name table, so the optimizer state reaches the right parameters whatever
order PaddleClas created them in. Writing cannot: PaddleClas's resume looks accumulators up by
the names its own, fresh process generates, which follow the order layers are created in and
the Paddle layer classes used (PaddleClas's ``nn.BatchNorm`` is ``batch_norm_3`` where our
``BatchNorm2D`` is ``batch_norm2d_3``). :data:`PADDLECLAS_NAME_PREFIXES` lists the model families
where our models give PaddleClas's names (after renaming such prefixes), as checked against
PaddleClas's code by ``tools/dev/check_paddleclas_param_names.py``; others are refused.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ..config.errors import ConfigError
from ..utils.safe_load import load_file

logger = logging.getLogger("ppfreeze")

KEY = "Global.checkpoints"
LR_KEY = "LR_Scheduler"
MASTER_WEIGHTS = "master_weights"
#: model family (module under ppfreeze/arch/backbone) -> {our generated layer prefix: PaddleClas's}.
#: Only families where every model was checked with tools/dev/check_paddleclas_param_names.py.
#: ``MODEL`` stands for the prefix of the model class itself (PaddleClas's ViTs are all one
#: ``VisionTransformer`` class: ``vision_transformer_0.w_0`` where ours is ``vi_t_base_patch16_224_0.w_0``).
MODEL = "MODEL"
PADDLECLAS_NAME_PREFIXES: Dict[str, Dict[str, str]] = {
    **{family: {"batch_norm2d": "batch_norm"}   # PaddleClas uses the older nn.BatchNorm there
       for family in ("esnet", "hrnet", "inception_v3", "mobilenet_v1", "mobilenet_v3", "resnet")},
    **{family: {} for family in ("pphgnet", "pphgnet_v2", "pplcnet", "repvgg", "vgg", "wideresnet")},
    "vision_transformer": {MODEL: "vision_transformer"},
}
#: retrieval / head gears whose parameters PaddleClas names as ours are named (same Paddle layers)
PADDLECLAS_NAMED_GEARS = ("FC", "ArcMargin", "CosMargin", "CircleMargin")
_GENERATED = re.compile(r"^([a-z0-9_]+)(_\d+\.[wb]_\d+)$")
_COUNTER = re.compile(r"_\d+$")


@dataclass
class ImportedCheckpoint:
    """A PaddleClas checkpoint turned into ppfreeze's terms.

    Attributes:
        model: the trained weights (structured keys -> arrays).
        ema: the EMA weights (``.pdparams`` of a run with EMA), or None.
        optimizer: accumulators keyed ``<structured name>@<accumulator>``, plus ``LR_Scheduler``.
        epoch: the last finished epoch.
        notes: what was adapted on the way (logged by the caller).
    """
    model: Dict[str, np.ndarray]
    ema: Optional[Dict[str, np.ndarray]]
    optimizer: Dict[str, Any]
    epoch: int
    notes: List[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- reading
def import_checkpoint(path: str, data: Dict[str, Any],
                      generated_names: Optional[Callable[[], Dict[str, str]]] = None) -> ImportedCheckpoint:
    """Turn what :func:`ppfreeze.engine.checkpoint.load_checkpoint` read from a PaddleClas
    checkpoint into ppfreeze's terms; a ConfigError names whatever cannot be carried.

    Args:
        path: the checkpoint prefix (for messages).
        data: ``{"model", "states", "optimizer", ["ema"], "name_tables"}`` from ``load_checkpoint``.
        generated_names: structured key -> PaddleClas's parameter name, for a file without a
            name table (see :func:`paddleclas_param_names`).
    """
    if "optimizer" not in data:
        raise ConfigError(KEY, f"{path}.pdopt is missing: cannot resume the optimizer",
                          f"to fine-tune from the weights only, use -o Global.pretrained_model={path}")
    with_ema = "ema" in data
    # PaddleClas with EMA: .pdparams = EMA weights, .pdema = the trained weights
    model, ema = (data["ema"], data["model"]) if with_ema else (data["model"], None)
    table = data.get("name_tables", {}).get("ema" if with_ema else "model")
    notes = []
    if not table:
        if generated_names is None:
            raise ConfigError(KEY, f"{path}: the weights file has no parameter name table, so PaddleClas's "
                                   f"optimizer state cannot be matched to parameters",
                              f"start from its weights instead: -o Global.pretrained_model={path}")
        table = generated_names()
        notes.append("the weights file has no name table: optimizer entries were matched by the names "
                     "PaddleClas generates for this model")
    by_param_name = {name: key for key, name in table.items()}
    optimizer = _single_optimizer_state(path, data["optimizer"])
    state, unmatched = {}, []
    for key, value in optimizer.items():
        if key == LR_KEY:
            state[LR_KEY] = value
        elif key == MASTER_WEIGHTS:
            model = _apply_master_weights(path, model, value, by_param_name)
            notes.append(f"AMP O2 master weights ({len(value)} float32 copies) used as the model weights")
        else:
            target = _accumulator_target(key, by_param_name)
            if target is None:
                unmatched.append(key)
            else:
                state[target] = value
    if unmatched:
        raise ConfigError(KEY, f"{path}.pdopt: {len(unmatched)} optimizer entries belong to no parameter of the "
                               f"checkpoint's model, e.g. {unmatched[:3]}",
                          "the .pdopt and .pdparams come from different runs; resume from a complete checkpoint")
    states = data["states"]
    epoch = states.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
        raise ConfigError(KEY, f"{path}.pdstates: 'epoch' is {epoch!r}, expected the last finished epoch")
    return ImportedCheckpoint(model=model, ema=ema, optimizer=state, epoch=int(epoch), notes=notes)


def _single_optimizer_state(path: str, optimizer: Any) -> Dict[str, Any]:
    """PaddleClas writes a list with one state per optimizer (older versions: the dict itself)."""
    if isinstance(optimizer, dict):
        return optimizer
    if isinstance(optimizer, list) and len(optimizer) == 1 and isinstance(optimizer[0], dict):
        return optimizer[0]
    count = len(optimizer) if isinstance(optimizer, list) else "no"
    raise ConfigError(KEY, f"{path}.pdopt holds {count} optimizer states; ppfreeze trains with one optimizer "
                           f"(a list of per-scope optimizers is not implemented)",
                      f"start from its weights instead: -o Global.pretrained_model={path}")


def _accumulator_target(key: str, by_param_name: Dict[str, str]) -> Optional[str]:
    """``conv2d_0.w_0_velocity_0`` -> ``stem.0.conv.weight@velocity`` (None: no such parameter)."""
    stem = _COUNTER.sub("", key)   # drop the unique-name counter
    best = None
    for i, char in enumerate(stem):
        if char == "_" and stem[:i] in by_param_name:
            best = i   # the longest parameter name that prefixes the key
    if best is None:
        return None
    return f"{by_param_name[stem[:best]]}@{stem[best + 1:]}"


def _apply_master_weights(path: str, model: Dict[str, np.ndarray], master: Dict[str, Any],
                          by_param_name: Dict[str, str]) -> Dict[str, np.ndarray]:
    model = dict(model)
    for name, value in master.items():
        if name not in by_param_name:
            raise ConfigError(KEY, f"{path}.pdopt: master weight {name!r} belongs to no parameter of the model")
        model[by_param_name[name]] = np.asarray(value)
    return model


def cast_like(weights: Dict[str, np.ndarray], model_state: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """Arrays in the model's dtypes (PaddleClas's AMP O2 saves float16 weights)."""
    out = {}
    for key, value in weights.items():
        target = model_state.get(key)
        dtype = str(target.dtype).split(".")[-1] if target is not None else None
        value = np.asarray(value)
        out[key] = value.astype(dtype) if dtype and dtype != "bfloat16" and value.dtype.name != dtype else value
    return out


def split_optimizer_state(state: Dict[str, Any], expected: List[str]) -> Tuple[Dict[str, Any], List[str], List[str]]:
    """(the entries an optimizer expecting ``expected`` keys uses, keys it lacks, keys left over)."""
    used = {k: v for k, v in state.items() if k in expected or k == LR_KEY}
    missing = [k for k in expected if k not in state]
    extra = sorted(k for k in state if k not in used)
    return used, missing, extra


def check_lr_state(path: str, saved: Any, expected: Any, where: str = "LR_Scheduler") -> None:
    """The saved LR schedule state must have the structure of this run's (Paddle would silently
    ignore an extra warmup level, or fail with a KeyError on a missing one)."""
    if not isinstance(saved, dict) or set(saved) != set(expected):
        raise ConfigError("Optimizer.lr", f"{path}.pdopt: its {where} state {sorted(saved) if isinstance(saved, dict) else saved!r} "
                                          f"does not fit this run's schedule ({sorted(expected)})",
                          "resume with the Optimizer.lr section the checkpoint was trained with (warmup included)")
    for key, value in expected.items():
        if isinstance(value, dict):
            check_lr_state(path, saved[key], value, f"{where}.{key}")


def best_metric_beside(path: str, epoch: int) -> Optional[Tuple[float, int]]:
    """PaddleClas's ``best_model.pdstates`` next to the checkpoint: ``(metric, epoch)`` if it is
    from this run's past (its epoch not after ``epoch``), else None."""
    states_path = os.path.join(os.path.dirname(os.path.abspath(path)), "best_model.pdstates")
    if not os.path.isfile(states_path):
        return None
    try:
        states = load_file(states_path, "checkpoint file")
    except Exception:   # a damaged side file only costs the best metric, not the resume
        logger.warning("could not read %s: the best metric starts unknown", states_path)
        return None
    metric, best_epoch = states.get("metric"), states.get("epoch")
    if isinstance(metric, (int, float, np.number)) and isinstance(best_epoch, (int, np.integer)) \
            and 0 < best_epoch <= epoch and math.isfinite(float(metric)):
        return float(metric), int(best_epoch)
    return None


# ----------------------------------------------------------------------------- resuming
def resume(engine: Any, path: str, data: Dict[str, Any]) -> int:
    """Continue ``engine``'s training from PaddleClas checkpoint ``path`` (read by ``load_checkpoint``);
    returns the first epoch to train.

    Carried: the weights, the optimizer's accumulators and LR schedule, the epoch, the EMA
    weights (when both runs have EMA) and PaddleClas's ``best_model.pdstates`` metric beside it.
    The global step becomes ``epoch x iterations per epoch``; PaddleClas stores no RNG state.
    Whatever cannot be carried is a ConfigError that names it.
    """
    from . import checkpoint as ckpt
    from .ema import ModelEMA
    arch = engine.config["Arch"]
    imported = import_checkpoint(path, data, lambda: paddleclas_param_names(arch, engine.build_arch))
    model = engine.unwrapped_model
    model_state = model.state_dict()
    ckpt.check_weights_fit(path, arch.get("name"), model_state, imported.model)
    ckpt.check_epochs_left(path, imported.epoch, engine.epochs)
    model.set_state_dict(cast_like(imported.model, model_state))
    engine.freezer.enter(engine, imported.epoch + 1)
    used, missing, extra = split_optimizer_state(imported.optimizer, ckpt.optimizer_keys(engine.optimizer, model))
    if missing:
        raise ConfigError(KEY, f"{path}.pdopt has no optimizer state for {len(missing)} entries this run trains, "
                               f"e.g. {missing[:3]}",
                          "resume with the Optimizer section the checkpoint was trained with; parameters PaddleClas "
                          "did not train need a Freeze rule here too; or start from the weights alone with "
                          f"-o Global.pretrained_model={path}")
    if extra:
        imported.notes.append(f"optimizer state of {len(extra)} entries is not carried: this run does not train "
                              f"those parameters (e.g. {extra[:3]})")
    if LR_KEY in used and engine.lr_scheduler is not None:
        check_lr_state(path, used[LR_KEY], engine.lr_scheduler.state_dict())
    ckpt.load_optimizer_state(engine.optimizer, model, used, engine.lr_scheduler, source=path)
    if engine.ema is not None:
        if imported.ema is not None:
            engine.ema.set_state_dict(cast_like(imported.ema, model_state))
        else:
            engine.ema = ModelEMA(model, engine.ema.decay)
            imported.notes.append("the checkpoint has no EMA weights: the EMA restarts from the resumed weights")
    elif imported.ema is not None:
        imported.notes.append("the checkpoint's EMA weights are not used: this config has no EMA section")
    engine.global_step = imported.epoch * engine.iters_per_epoch
    best = best_metric_beside(path, imported.epoch)
    if best is not None:
        engine.best_metric, engine.best_epoch = best
    for note in imported.notes:
        logger.info("%s: %s", path, note)
    logger.info("Resumed from PaddleClas checkpoint %s: epoch %d done, global step %d, best metric %s",
                path, imported.epoch, engine.global_step,
                f"{best[0]:.5f} (epoch {best[1]}, best_model.pdstates)" if best else "unknown")
    return imported.epoch + 1


# ----------------------------------------------------------------------------- PaddleClas's names
def paddleclas_param_names(arch_cfg: Dict[str, Any], build: Callable[[Dict[str, Any]], Any]) -> Dict[str, str]:
    """Structured key -> the ``param.name`` PaddleClas's trainer gives that parameter.

    Builds the model again (``build(arch_cfg)``, weights not loaded) in a fresh name scope, as a
    fresh PaddleClas process builds it, and renames layer-class prefixes per
    :data:`PADDLECLAS_NAME_PREFIXES`. A model family not listed there is a ConfigError.
    """
    import paddle
    arch_cfg = _without_pretrained(arch_cfg)
    with paddle.utils.unique_name.guard():
        with paddle.LazyGuard():
            model = build(arch_cfg)
    renames = _verified_renames(arch_cfg, model)
    names = {}
    for key, param in model.named_parameters():
        match = _GENERATED.match(param.name)
        if match is None:
            raise ConfigError("Arch", f"parameter {key} is named {param.name!r}, not a name Paddle generates",
                              "this model cannot be written in PaddleClas's checkpoint layout")
        prefix, rest = match.groups()
        names[key] = renames.get(prefix, prefix) + rest
    return names


def _verified_renames(arch_cfg: Dict[str, Any], model: Any) -> Dict[str, str]:
    backbone = getattr(model, "backbone", model) if arch_cfg.get("name") == "RecModel" else model
    family = type(backbone).__module__.rsplit(".", 1)[-1]
    if family not in PADDLECLAS_NAME_PREFIXES:
        raise ConfigError("Arch.name", f"{type(backbone).__name__} ({family} family): ppfreeze cannot tell which "
                                       f"names PaddleClas gives its parameters (PaddleClas's code names some itself, "
                                       f"or creates its layers in another order), and PaddleClas finds optimizer "
                                       f"state by those names",
                          f"supported families: {', '.join(sorted(PADDLECLAS_NAME_PREFIXES))}; to move the "
                          f"weights alone, PaddleClas's Global.pretrained_model reads our .pdparams as it is")
    if arch_cfg.get("name") == "RecModel":
        for section in ("Neck", "Head"):
            gear = (arch_cfg.get(section) or {}).get("name")
            if gear is not None and gear not in PADDLECLAS_NAMED_GEARS:
                raise ConfigError(f"Arch.{section}.name", f"{gear}: PaddleClas's parameter names for this gear are "
                                                          f"not known to ppfreeze",
                                  f"supported: {', '.join(PADDLECLAS_NAMED_GEARS)}")
    renames = dict(PADDLECLAS_NAME_PREFIXES[family])
    if MODEL in renames:
        renames[_COUNTER.sub("", backbone.full_name())] = renames.pop(MODEL)
    return renames


def _without_pretrained(cfg: Any) -> Any:
    """A copy of an Arch section with every ``pretrained`` removed (only the names are wanted)."""
    if isinstance(cfg, dict):
        return {k: _without_pretrained(v) for k, v in cfg.items() if k != "pretrained"}
    return copy.deepcopy(cfg)


# ----------------------------------------------------------------------------- writing
def paddleclas_optimizer_state(state: Dict[str, Any], names: Dict[str, str]) -> Dict[str, Any]:
    """Our ``<structured>@<accumulator>`` entries under PaddleClas's keys (``conv2d_0.w_0_velocity_0``)."""
    out = {}
    for key, value in state.items():
        if key == LR_KEY:
            out[LR_KEY] = value
            continue
        structured, _, accumulator = key.rpartition("@")
        if structured not in names:
            raise ConfigError(KEY, f"optimizer entry {key} belongs to no parameter of the model Arch builds",
                              "export with the config the checkpoint was trained with")
        # unique_name.generate(param.name + "_" + accumulator): counter 0 in a process with one optimizer
        out[f"{names[structured]}_{accumulator}_0"] = value
    return out


@dataclass
class ExportSummary:
    """What :func:`write_paddleclas_checkpoint` wrote."""
    files: List[str]
    epoch: int
    accumulators: int
    fresh: List[str]


def write_paddleclas_checkpoint(config: Dict[str, Any], source: str, output: str) -> ExportSummary:
    """Write ppfreeze checkpoint ``source`` as PaddleClas checkpoint ``output`` (a prefix), which
    PaddleClas's ``Global.checkpoints`` resumes from.

    ``config`` is the run's config: its ``Arch`` gives the parameters PaddleClas's names, its
    ``Optimizer`` the fresh state of parameters the checkpoint has none for (frozen when it was
    saved: PaddleClas, which has no Freeze section, trains them from the next step on). With
    EMA, ``.pdparams`` holds the EMA weights and ``.pdema`` the trained ones, as PaddleClas saves them.
    """
    import paddle

    from ..arch import build_model
    from ..optim import build_optimizer
    from ..utils.io import atomic_paddle_save
    from . import checkpoint as ckpt
    arch, glob = config["Arch"], config["Global"]
    data = ckpt.load_checkpoint(source, key="--checkpoint")
    states = data["states"]
    if ckpt.is_paddleclas_states(states):
        raise ConfigError("--checkpoint", f"{source} is already in PaddleClas's layout")
    if "freeze" not in states or states.get("weights", "model") != "model" or "optimizer" not in data:
        raise ConfigError("--checkpoint", f"{source} is not a ppfreeze training checkpoint with optimizer state",
                          "give latest or epoch_N of a training run (not best_model_ema)")
    if states.get("arch") not in (None, arch.get("name")):
        raise ConfigError("Arch.name", f"is {arch.get('name')}, but {source} was saved by a {states['arch']} model",
                          "give the config the checkpoint was trained with")

    def build(cfg: Dict[str, Any]) -> Any:
        return build_model(cfg, class_num=glob.get("class_num"), ml_decoder=config.get("MLDecoder"))
    names = paddleclas_param_names(arch, build)
    model = build(_without_pretrained(arch))
    ckpt.check_weights_fit(source, arch.get("name"), model.state_dict(), data["model"])
    model.set_state_dict(data["model"])
    trainable = [(n, p) for n, p in model.named_parameters() if not p.stop_gradient]
    optimizer, _ = build_optimizer(config["Optimizer"], trainable, glob.get("epochs", 1), 1)
    ckpt.ensure_accumulators(optimizer)
    fresh = {k: v.numpy() for k, v in ckpt.optimizer_state(optimizer, model).items()}
    saved = {k: v for k, v in data["optimizer"].items() if k != LR_KEY}
    foreign = sorted(set(saved) - set(fresh))
    if foreign:
        raise ConfigError("Optimizer", f"{source} holds optimizer state this Optimizer section does not create, "
                                       f"e.g. {foreign[:3]}", "give the config the checkpoint was trained with")
    not_saved = sorted(set(fresh) - set(saved))
    if not_saved:
        logger.warning("%s has no optimizer state for %d entries (parameters frozen when it was saved, e.g. %s): "
                       "written with fresh values; PaddleClas trains every parameter from the next step on",
                       source, len(not_saved), not_saved[:3])
    opt_state = paddleclas_optimizer_state({**fresh, **saved}, names)
    if LR_KEY in data["optimizer"]:
        opt_state[LR_KEY] = data["optimizer"][LR_KEY]
    weights = {k: np.asarray(v) for k, v in data["model"].items()}
    files = {".pdparams": weights}
    if "ema" in data:   # PaddleClas's layout with EMA: .pdparams = EMA, .pdema = trained
        files = {".pdparams": {**weights, **{k: np.asarray(v) for k, v in data["ema"].items()}}, ".pdema": weights}
    best = states.get("best_metric")
    files[".pdopt"] = [_as_tensors(opt_state)]
    files[".pdstates"] = {"metric": float(best) if isinstance(best, (int, float)) and math.isfinite(best) else 0.0,
                          "epoch": int(states["epoch"])}
    written = []
    for suffix, obj in files.items():   # .pdstates last, as PaddleClas writes it
        target = output + suffix
        if os.path.islink(target):
            raise ConfigError("--output", f"{target} is a link (a ppfreeze run's checkpoint name): writing through it "
                                          f"would change that checkpoint", "write to another directory")
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        # weights keep PaddleClas's parameter names: paddle.save writes them as the name table
        atomic_paddle_save(_as_tensors(obj, names) if suffix in (".pdparams", ".pdema") else obj, target)
        written.append(target)
    return ExportSummary(written, int(states["epoch"]), len(opt_state) - (LR_KEY in opt_state), not_saved)


def _as_tensors(state: Dict[str, Any], names: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """Arrays as Paddle tensors (what PaddleClas's files hold), named ``names[key]`` where given."""
    import paddle
    out = {}
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            value = paddle.to_tensor(value)
            if names and key in names:
                value.name = names[key]
        out[key] = value
    return out
