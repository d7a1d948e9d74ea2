"""Structural validation of a merged config (sections, Global keys, types).

Component names and their keyword arguments are checked by the shared builder when the
component is built (see ``ppfreeze.utils.builder``); this module checks the skeleton.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Tuple

from .errors import ConfigError, did_you_mean

logger = logging.getLogger("ppfreeze")

SECTIONS = ("Global", "AMP", "Arch", "Loss", "Optimizer", "DataLoader", "Metric", "Infer", "EMA", "Freeze",
            "MLDecoder", "SSL", "UnLabelLoss")
# Sections PaddleClas configs may carry that only deploy tools read; accepted and ignored in training.
PASSIVE_SECTIONS = ("IndexProcess", "RecPreProcess", "RecPostProcess", "PreProcess", "PostProcess", "DetPreProcess",
                    "DetPostProcess", "Slim")
# Slim (PaddleSlim quantization / pruning) is accepted only when empty: ignoring it would give a float,
# unpruned model where the config asks for a quantized or pruned one
SLIM_KINDS = {"quant": "quantization-aware training", "prune": "filter pruning"}

_NUM = (int, float)
_OPT_STR = (str, type(None))
# key -> accepted types
GLOBAL_KEYS: Dict[str, Tuple[type, ...]] = {
    "checkpoints": _OPT_STR, "pretrained_model": _OPT_STR, "output_dir": (str,),
    "device": (str,), "class_num": (int, type(None)), "save_interval": (int,), "eval_during_train": (bool,),
    "eval_interval": (int,), "start_eval_epoch": (int,), "epochs": (int,), "print_batch_step": (int,),
    "use_visualdl": (bool,), "image_shape": (list,), "save_inference_dir": (str,), "seed": (int, type(None)),
    "eval_mode": (str,), "num_threads": (int, type(None)), "export_format": (str,), "to_static": (bool,),
    "retrieval_feature_from": (str,), "feature_normalize": (bool,), "max_eval_steps": (int, type(None)),
    # retrieval evaluation as PaddleClas does it (round | sign); re-ranking: only false is implemented
    "feature_binarize": _OPT_STR, "re_ranking": (bool,),
    "max_train_steps": (int, type(None)), "allow_missing_keys": (bool,),
    # reliability (docs/reliability.md): replace an earlier run's checkpoints; how much of the model
    # Global.pretrained_model must cover (all_but_head | all | a share of the values in [0, 1])
    "overwrite": (bool,), "min_weights_coverage": (str, int, float),
    # multi-label targets ([N, C] / [N, 2, C]); evaluation passes labels through unchanged either way
    "use_multilabel": (bool,),
    # PaddleClas: iterations per epoch (the loader is cycled), gradient accumulation, its special trainers
    "iter_per_epoch": (int, type(None)), "update_freq": (int,), "train_mode": _OPT_STR,
    # PaddleClas configs use it only as a YAML anchor for Arch.input_image_channel; no effect of its own
    "image_channel": (int,),
    # MetaBIN's warm-up iterations: read only by train_mode metabin, which is refused with its reason
    "warmup_iter": (int,),
}
# PaddleClas's special training loops (Global.train_mode), which ppfreeze does not implement
UNSUPPORTED_TRAIN_MODES = {"metabin": "MetaBIN domain generalisation", "progressive": "progressive "
                           "resizing (EfficientNetV2)"}
# PaddleClas's special trainers ppfreeze implements (ppfreeze/engine/semi_supervised.py)
TRAIN_MODES = ("fixmatch", "fixmatch_ccssl")
# PaddleClas Global keys we accept but do not act on (a warning says so).
IGNORED_GLOBAL_KEYS = ("use_dali", "distributed", "pretrained", "infer_imgs",
                       "save_inference_freq", "use_fp16", "platform")
MAX_CLASS_NUM = 2 ** 31 - 1   # Paddle sizes layers with int32
MAX_SEED = 2 ** 63 - 1        # paddle.seed takes an int64

# Keys of the component sections, as PaddleClas's configs (ppcls/configs) use them. Component
# names and arguments below these levels are checked when the components are built.
SECTION_KEYS: Dict[str, Tuple[str, ...]] = {
    "Loss": ("Train", "Eval"),
    "Metric": ("Train", "Eval"),
    # UnLabelTrain: Global.train_mode fixmatch / fixmatch_ccssl; mean / std: values PaddleClas's
    # CCSSL configs keep there (read by nothing, as in PaddleClas)
    "DataLoader": ("Train", "Eval", "UnLabelTrain", "mean", "std"),
    "Infer": ("infer_imgs", "batch_size", "transforms", "PostProcess"),
}
LOADER_KEYS = ("dataset", "sampler", "loader")
RETRIEVAL_SIDES = ("Query", "Gallery")
# PaddleClas keys of features ppfreeze does not implement: refused with the reason, never ignored.
UNSUPPORTED_KEYS = {
    "Loss.Basic": "MetaBIN's meta-learning losses are not implemented",
    "Loss.MetaTrain": "MetaBIN's meta-learning losses are not implemented",
    "Loss.MetaTest": "MetaBIN's meta-learning losses are not implemented",
    "DataLoader.Metalearning": "MetaBIN's meta-learning loader is not implemented",
}


def _type_names(types: Tuple[type, ...]) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


def check_typed_keys(section: Dict[str, Any], known: Dict[str, Tuple[type, ...]], key: str, where: str = "",
                     ignored: Tuple[str, ...] = (), program: str = "ppfreeze") -> None:
    """Check a flat section (``Global``) against ``known`` key -> accepted types.

    Unknown keys get a did-you-mean; ``ignored`` keys (PaddleClas's, without an effect here) are
    logged once; ``True`` is not accepted for an ``int`` key. Shared by training and deploy configs.
    """
    for name, value in section.items():
        if name in ignored:
            logger.warning("%s.%s is a PaddleClas key that %s ignores", key, name, program)
            continue
        if name not in known:
            raise ConfigError(f"{key}.{name}", f"unknown key{where}", did_you_mean(name, known).strip() or
                              f"known keys: {', '.join(sorted(known))}")
        types = known[name]
        if isinstance(value, bool) and bool not in types:
            ok = False
        else:
            ok = isinstance(value, types) or (float in types and isinstance(value, int))
        if not ok:
            raise ConfigError(f"{key}.{name}", f"expected {_type_names(types)}, got {type(value).__name__} {value!r}")


def _check_slim(slim: Any) -> None:
    """A ``Slim`` section that asks for quantization or pruning is refused (PaddleSlim is not used)."""
    for kind, what in SLIM_KINDS.items():
        if isinstance(slim, dict) and slim.get(kind):
            name = slim[kind].get("name") if isinstance(slim[kind], dict) else slim[kind]
            raise ConfigError(f"Slim.{kind}", f"{name!r} asks for PaddleSlim {what}, which ppfreeze does not "
                                              "implement: training would give a float model, "
                                              f"{'not quantized' if kind == 'quant' else 'not pruned'}",
                              "remove the Slim section to train the float model")


def validate_config(cfg: Dict[str, Any], source: str = "") -> None:
    """Raise ConfigError for unknown sections, unknown Global keys and wrong types."""
    where = f" in {source}" if source else ""
    for section in cfg:
        if section not in SECTIONS and section not in PASSIVE_SECTIONS:
            raise ConfigError(section, f"unknown section{where}",
                              f"known sections: {', '.join(SECTIONS)}.{did_you_mean(section, SECTIONS)}")
    for section in ("Global", "Arch"):
        if section not in cfg or not isinstance(cfg[section], dict):
            raise ConfigError(section, f"missing or not a mapping{where}", f"every config needs a '{section}:' section")
    _check_slim(cfg.get("Slim"))
    glob = cfg["Global"]
    check_typed_keys(glob, GLOBAL_KEYS, "Global", where, IGNORED_GLOBAL_KEYS)
    mode = glob.get("train_mode")
    if mode and mode not in TRAIN_MODES:
        what = UNSUPPORTED_TRAIN_MODES.get(mode, "an unknown trainer")
        raise ConfigError("Global.train_mode", f"{mode!r} selects PaddleClas's {what}, which ppfreeze does not "
                                               "implement", "remove train_mode for standard supervised training")
    if not mode and "UnLabelTrain" in (cfg.get("DataLoader") or {}):   # else its images would be ignored
        raise ConfigError("DataLoader.UnLabelTrain", f"unlabeled images are used only by semi-supervised training"
                                                     f"{where}", "set Global.train_mode: fixmatch (or fixmatch_ccssl)")
    device = glob.get("device", "auto")
    if device not in ("cpu", "gpu", "auto") and not str(device).startswith("gpu:"):
        raise ConfigError("Global.device", f"expected cpu, gpu or auto, got {device!r}")
    if "image_shape" in glob and (len(glob["image_shape"]) != 3 or not all(isinstance(v, int) for v in glob["image_shape"])):
        raise ConfigError("Global.image_shape", f"expected [C, H, W] integers, got {glob['image_shape']!r}")
    for key in ("epochs", "save_interval", "eval_interval", "print_batch_step"):
        # save_interval -1: PaddleClas saves when epoch % -1 == 0, i.e. every epoch (its FixMatch configs)
        if key in glob and glob[key] < 1 and not (key == "save_interval" and glob[key] == -1):
            raise ConfigError(f"Global.{key}", f"must be >= 1, got {glob[key]}")
    for key in ("max_train_steps", "max_eval_steps"):  # 0 used to mean "no limit": say null for that
        if glob.get(key) is not None and glob[key] < 1:
            raise ConfigError(f"Global.{key}", f"must be >= 1, got {glob[key]}", "null (the default) means no limit")
    if glob.get("seed") is not None and not 0 <= glob["seed"] <= MAX_SEED:
        raise ConfigError("Global.seed", f"must be between 0 and 2**63-1, got {glob['seed']}",
                          "null means the default seed 0")
    if glob.get("class_num") is not None and not 1 <= glob["class_num"] <= MAX_CLASS_NUM:
        raise ConfigError("Global.class_num", f"must be between 1 and 2**31-1, got {glob['class_num']}")
    for section in SECTION_KEYS:
        if section in cfg:
            _check_section_keys(cfg[section], section, where)


def _check_section_keys(value: Any, section: str, where: str) -> None:
    """Unknown keys in Loss / Metric / DataLoader / Infer are mistakes, not silently ignored."""
    known = SECTION_KEYS[section]
    if not isinstance(value, dict):
        raise ConfigError(section, f"expected a mapping with keys such as {', '.join(known)}{where}, "
                                   f"got {type(value).__name__} {value!r}")
    for name in value:
        _check_known(name, known, section, where)
    if section != "DataLoader":
        return
    for mode, mode_cfg in value.items():
        if mode in ("mean", "std"):
            continue
        key = f"DataLoader.{mode}"
        if not isinstance(mode_cfg, dict):
            raise ConfigError(key, f"expected a mapping with {', '.join(LOADER_KEYS)}{where}, got {mode_cfg!r}")
        sides = [side for side in RETRIEVAL_SIDES if side in mode_cfg]
        if mode == "Eval" and sides:   # retrieval: Eval.Query and Eval.Gallery are loader sections
            for name in mode_cfg:
                _check_known(name, RETRIEVAL_SIDES, key, where)
            for side in sides:
                if not isinstance(mode_cfg[side], dict):
                    raise ConfigError(f"{key}.{side}", f"expected a mapping with {', '.join(LOADER_KEYS)}{where}, "
                                                       f"got {mode_cfg[side]!r}")
                for name in mode_cfg[side]:
                    _check_known(name, LOADER_KEYS, f"{key}.{side}", where)
        else:
            for name in mode_cfg:
                _check_known(name, LOADER_KEYS, key, where)


def _check_known(name: Any, known: Tuple[str, ...], parent: str, where: str) -> None:
    key = f"{parent}.{name}"
    if key in UNSUPPORTED_KEYS:
        raise ConfigError(key, f"{UNSUPPORTED_KEYS[key]}{where}", "remove it; ppfreeze would otherwise ignore it")
    if name not in known:
        raise ConfigError(key, f"unknown key{where}",
                          f"accepted: {', '.join(known)}.{did_you_mean(str(name), known)}")
