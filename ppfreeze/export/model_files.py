"""Which files make up an exported model directory (pure Python: deploy uses it)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from ..config.errors import ConfigError

PREFIX = "inference"
PIR_MODEL = f"{PREFIX}.json"         # Paddle 3 default (PIR program)
LEGACY_MODEL = f"{PREFIX}.pdmodel"   # FLAGS_enable_pir_api=0 (ProgramDesc)
PARAMS = f"{PREFIX}.pdiparams"
ONNX_MODEL = f"{PREFIX}.onnx"
FORMATS = {"json": PIR_MODEL, "pdmodel": LEGACY_MODEL}


@dataclass
class ModelFiles:
    """Paths of one exported model; ``onnx_file`` is None when no ONNX copy was made."""
    model_dir: str
    model_file: str
    params_file: str
    format: str
    onnx_file: Optional[str] = None


def find_model_files(model_dir: str, key: str = "Global.inference_model_dir") -> ModelFiles:
    """Locate ``inference.json`` (preferred) or ``inference.pdmodel`` plus ``inference.pdiparams``."""
    if not model_dir or not os.path.isdir(model_dir):
        raise ConfigError(key, f"model directory not found: {model_dir!r}",
                          "export one with tools/export_model.py -o Global.save_inference_dir=<dir>")
    params = os.path.join(model_dir, PARAMS)
    onnx = os.path.join(model_dir, ONNX_MODEL)
    for fmt, name in FORMATS.items():
        model = os.path.join(model_dir, name)
        if os.path.isfile(model):
            if not os.path.isfile(params):
                raise ConfigError(key, f"{model} has no {PARAMS} beside it", "re-export the model")
            return ModelFiles(model_dir, model, params, fmt, onnx if os.path.isfile(onnx) else None)
    if os.path.isfile(onnx):  # an ONNX-only directory still serves use_onnx
        return ModelFiles(model_dir, "", "", "onnx", onnx)
    present = sorted(os.listdir(model_dir))[:10]
    raise ConfigError(key, f"{model_dir} holds no {PIR_MODEL} or {LEGACY_MODEL} (found: {present})",
                      "point it at the directory tools/export_model.py wrote (Global.save_inference_dir)")
