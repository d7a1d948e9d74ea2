"""Export: inference models (``paddle.jit.save``), ``inference.yml``, ONNX, sublayer weights.

Importing this package does not import paddle: deploy tools read ``inference.yml`` through
:mod:`ppfreeze.export.inference_yml` and :mod:`ppfreeze.export.model_files` without the
training stack. The paddle-backed parts load on first attribute access.
"""
from ..utils.lazy import lazy_getattr

from .inference_yml import INFERENCE_YML, read_inference_yml
from .model_files import ModelFiles, find_model_files

# name -> submodule, imported on first access (PEP 562) because they import paddle.
_PADDLE_BACKED = {
    "export_model": "exporter",
    "ExportResult": "exporter",
    "InferenceModel": "wrapper",
    "save_sublayer_weights": "sublayer_weights",
    "load_sublayer_weights": "sublayer_weights",
    "save_trained_tensors": "adapter_weights",
    "load_trained_tensors": "adapter_weights",
}

__getattr__ = lazy_getattr(__name__, _PADDLE_BACKED)


__all__ = ["INFERENCE_YML", "read_inference_yml", "ModelFiles", "find_model_files", *_PADDLE_BACKED]
