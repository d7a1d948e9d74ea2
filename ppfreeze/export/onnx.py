"""Optional ONNX copy of an exported model (``pip install -e .[onnx]``)."""
from __future__ import annotations

import logging
import os

from ..config.errors import ConfigError
from .model_files import ONNX_MODEL, find_model_files

DEFAULT_OPSET = 11
logger = logging.getLogger("ppfreeze")


def require_paddle2onnx(key: str = "--onnx") -> None:
    """Fail before any work when paddle2onnx is missing."""
    try:
        import paddle2onnx  # noqa: F401
    except ImportError:
        raise ConfigError(key, "ONNX export needs paddle2onnx, which is not installed",
                          "pip install -e .[onnx]  (installs paddle2onnx and onnxruntime), or drop --onnx") from None


def convert_to_onnx(model_dir: str, opset_version: int = DEFAULT_OPSET) -> str:
    """Convert ``model_dir``'s Paddle inference model to ``inference.onnx`` beside it; returns its path."""
    require_paddle2onnx()
    import paddle2onnx
    files = find_model_files(model_dir, "Global.save_inference_dir")
    out = os.path.join(model_dir, ONNX_MODEL)
    paddle2onnx.export(files.model_file, files.params_file, out, opset_version=opset_version,
                       enable_onnx_checker=True)
    if not os.path.isfile(out):
        raise RuntimeError(f"paddle2onnx reported no error but wrote no {out}")
    logger.info("export: ONNX model written (opset %d)", opset_version)
    return out
