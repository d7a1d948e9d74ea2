"""Export a trained model for ``paddle.inference``: program + weights + ``inference.yml``.

    export_model(config)   # what tools/export_model.py runs

Weights that did not load cleanly are refused (PaddleClas's "Skip loading for ..." leaves
random tensors in an exported model); ``Global.allow_missing_keys: true`` overrides.
"""
from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import paddle
from paddle.static import InputSpec

from .. import __version__
from ..config.errors import ConfigError
from ..data.postprocess import read_class_id_map
from .inference_yml import export_postprocess, export_preprocess, write_inference_yml
from .model_files import FORMATS, PARAMS, PREFIX
from .staging import CLASS_ID_MAP, staged_directory
from .wrapper import InferenceModel, check_output_key, is_multilabel, split_export_keys

logger = logging.getLogger("ppfreeze")

INPUT_NAME = "x"
DEFAULT_DIR = "./inference"
_MAX_NAMES = 20


@dataclass
class ExportResult:
    """Where the model went and the ``inference.yml`` content written with it."""
    save_dir: str
    meta: Dict[str, Any]


def export_model(config: Dict[str, Any], save_dir: Optional[str] = None, onnx: bool = False) -> ExportResult:
    """Export the model ``config`` describes, with ``Global.pretrained_model`` weights.

    Args:
        config: merged, validated config (``Global.export_format``: json (default) or pdmodel).
        save_dir: target directory (default ``Global.save_inference_dir`` or ./inference).
        onnx: also write ``inference.onnx`` (needs paddle2onnx).
    """
    glob = config["Global"]
    save_dir = save_dir or glob.get("save_inference_dir") or DEFAULT_DIR
    fmt = glob.get("export_format", "json")
    if fmt not in FORMATS:
        raise ConfigError("Global.export_format", f"expected one of {sorted(FORMATS)}, got {fmt!r}",
                          "json is Paddle 3's PIR program; pdmodel the legacy ProgramDesc")
    if onnx:
        from .onnx import require_paddle2onnx
        require_paddle2onnx()
    from .legacy import export_in_legacy_process, pir_enabled
    if fmt == "pdmodel" and pir_enabled():
        # The IR is chosen when paddle is imported; this process already runs PIR.
        return ExportResult(os.path.abspath(save_dir), export_in_legacy_process(config, save_dir, onnx))
    return _export(config, save_dir, fmt, onnx)


def build_export_engine(config: Dict[str, Any]):
    """An Engine (model built, Global.pretrained_model loaded) and the Arch output options."""
    from ..engine import Engine
    arch_cfg, options = split_export_keys(config["Arch"], is_multilabel(config))
    engine = Engine({**config, "Arch": arch_cfg}, mode="export")
    engine.model.eval()
    return engine, options


def _export(config: Dict[str, Any], save_dir: str, fmt: str, onnx: bool) -> ExportResult:
    glob = config["Global"]
    image_shape = list(glob.get("image_shape", [3, 224, 224]))
    preprocess, preprocess_key = export_preprocess(config)   # config mistakes first: nothing built yet
    postprocess = export_postprocess(config)
    engine, options = build_export_engine(config)
    weights = check_weights(engine.pretrained_report, glob)
    # the deploy form: multi-branch blocks fused (RepVGG), LoRA merged, only a DistillationModel's
    # infer_model_name; same outputs
    deploy = engine.model.export_model()
    output_keys = check_output_key(deploy, options, image_shape)
    freeze = freeze_summary(engine, image_shape) if config.get("Freeze") or engine.freeze.matches else None
    with staged_directory(save_dir) as staging:
        save_program(InferenceModel(deploy, options), image_shape, staging)
        postprocess, label_map = _stage_class_map(postprocess, staging)
        meta = {
            "Global": {"model_name": config["Arch"]["name"], "image_shape": image_shape, "input_name": INPUT_NAME,
                       "output_key": options.output_key if output_keys else None, "model_outputs": output_keys,
                       "softmax": options.add_softmax, "sigmoid": options.add_sigmoid, "format": fmt,
                       "model_file": FORMATS[fmt],
                       "params_file": PARAMS, "onnx_file": None, "exported_by": f"ppfreeze {__version__}",
                       "paddle_version": paddle.__version__},
            "PreProcess": {"transform_ops": preprocess, "source": preprocess_key},
            "PostProcess": postprocess,
            "LabelMap": label_map,
            "Weights": weights,
        }
        if freeze is not None:
            meta["Freeze"] = freeze
        if onnx:
            from .onnx import convert_to_onnx
            meta["Global"]["onnx_file"] = os.path.basename(convert_to_onnx(staging))
        write_inference_yml(staging, meta)
    logger.info("export: %s model written to %s", fmt, os.path.abspath(save_dir))
    return ExportResult(os.path.abspath(save_dir), meta)


def save_program(layer: paddle.nn.Layer, image_shape: Sequence[int], out_dir: str) -> None:
    """``paddle.jit.save`` with a dynamic batch: ``inference.json`` (or ``.pdmodel``) + ``.pdiparams``."""
    spec = InputSpec([None, *image_shape], "float32", name=INPUT_NAME)
    static = paddle.jit.to_static(layer, input_spec=[spec], full_graph=True)
    paddle.jit.save(static, os.path.join(out_dir, PREFIX))


def _shorten(names: List[str]) -> str:
    more = f" ... (+{len(names) - _MAX_NAMES} more)" if len(names) > _MAX_NAMES else ""
    return ", ".join(names[:_MAX_NAMES]) + more


def check_weights(report: Any, glob: Dict[str, Any]) -> Dict[str, Any]:
    """Refuse weights that leave model tensors at their random initialisation; return the summary.

    Args:
        report: the engine's ``LoadReport`` for ``Global.pretrained_model`` (None when unset).
        glob: the Global section (``pretrained_model``, ``allow_missing_keys``).
    """
    allow = bool(glob.get("allow_missing_keys", False))
    override = "or add -o Global.allow_missing_keys=True to export anyway"
    if report is None:
        if not allow:
            raise ConfigError("Global.pretrained_model", "not set: the exported model would hold random weights",
                              f"add -o Global.pretrained_model=output/<Arch>/best_model, {override}")
        logger.warning("export: no Global.pretrained_model; exporting random weights (allow_missing_keys)")
        return {"pretrained_model": None, "random_weights": True, "allow_missing_keys": allow}
    missing = list(report.missing)
    mismatched = [f"{n} (file {list(f)} vs model {list(m)})" for n, f, m in report.mismatched]
    if (missing or mismatched) and not allow:
        parts = ([f"missing from the file: {_shorten(missing)}"] if missing else []) + \
                ([f"shape differs: {_shorten(mismatched)}"] if mismatched else [])
        raise ConfigError("Global.pretrained_model",
                          f"{report.path}: {len(missing) + len(mismatched)} model tensors did not load and would "
                          f"keep random weights in the exported model; {'; '.join(parts)}",
                          f"export weights trained for this Arch (same model and class_num), {override}")
    if missing or mismatched:
        logger.warning("export: %d tensors keep random weights (allow_missing_keys)", len(missing) + len(mismatched))
    return {"pretrained_model": report.path, "loaded": len(report.loaded), "missing": missing,
            "mismatched": [n for n, _, _ in report.mismatched], "unexpected": len(report.unexpected),
            "allow_missing_keys": allow}


def freeze_summary(engine: Any, image_shape: Sequence[int]) -> Dict[str, Any]:
    """The Freeze plan's totals and methods, and the audit hash of the frozen tensors as exported.

    The audit line has the same form (and, for unchanged tensors, the same hash) as the one the
    training run logged and wrote to ``freeze_report.json``.
    """
    from ..freeze import FreezeAudit
    plan, model = engine.freeze, engine.model
    report = plan.report(model, image_shape, epoch=1)
    audit = FreezeAudit(model, plan)
    audit.snapshot()
    rule_keys = ("key", "select", "exclude", "method", "bn", "num_params", "frozen_now")
    return {
        "fingerprint": plan.fingerprint(),
        "params": report["params"],
        "flops": report["flops"],
        "method": report["method"],
        "bn_policies": dict(Counter(report["bn"].values())),
        "rules": [{k: rule[k] for k in rule_keys} for rule in report["rules"]],
        "schedule": [{"epoch": m["epoch"], "unfreeze": m["unfreeze"]} for m in report["schedule"]],
        "audit": audit.summary(),
        "audit_tensors": len(audit.names),
    }


def _stage_class_map(postprocess: Optional[Dict[str, Any]], staging: str):
    """Copy ``class_id_map_file`` next to the model; return (postprocess pointing at it, {id: name})."""
    if not postprocess or not postprocess.get("class_id_map_file"):
        return postprocess, None
    source = postprocess["class_id_map_file"]
    label_map = read_class_id_map(source, postprocess.get("delimiter"), "Infer.PostProcess.class_id_map_file")
    shutil.copyfile(source, os.path.join(staging, CLASS_ID_MAP))
    return {**postprocess, "class_id_map_file": CLASS_ID_MAP}, label_map
