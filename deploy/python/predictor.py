"""A small wrapper around ``paddle.inference`` (or onnxruntime) for exported models.

    predictor = Predictor("./inference", enable_mkldnn=True, cpu_num_threads=4)
    scores = predictor.run(batch)          # float32 [N, C, H, W] -> np.ndarray

Deploy code: imports paddle.inference and ppfreeze's pure-Python model-file lookup only, never
the training stack. The ``paddle.inference.Config`` comes from
``ppfreeze.export.predictor_config`` (shared with the prefix engine), which records the Paddle
3.3.1 facts that shaped it (no ``enable_memory_optim()`` on PIR models; oneDNN off must be
explicit).
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Optional

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from ppfreeze.config.errors import ConfigError  # noqa: E402
from ppfreeze.export.model_files import ModelFiles, find_model_files  # noqa: E402
from ppfreeze.export.predictor_config import inference_config  # noqa: E402

logger = logging.getLogger("deploy")


class Predictor:
    """Run an exported model on batches.

    Args:
        model_dir: directory with ``inference.json`` (or ``.pdmodel``) + ``inference.pdiparams``
            (and ``inference.onnx`` for ``use_onnx``).
        use_gpu: run on GPU (needs paddlepaddle-gpu); ``gpu_mem`` MB initial pool, ``gpu_id``.
        enable_mkldnn: oneDNN on CPU (default True: several times faster).
        cpu_num_threads: math library threads on CPU.
        use_fp16: half precision (GPU only; ignored with a warning on CPU).
        use_tensorrt: TensorRT subgraphs (GPU only; ignored with a warning on CPU).
        use_onnx: run ``inference.onnx`` with onnxruntime instead of paddle.inference.
        ir_optim: graph optimisation passes (default True).
        max_batch_size: largest batch for TensorRT's dynamic shape range.
        optim_cache_dir: if set, the optimised program is saved there (what really runs).
    """

    def __init__(self, model_dir: str, use_gpu: bool = False, gpu_mem: int = 8000, gpu_id: int = 0,
                 enable_mkldnn: bool = True, cpu_num_threads: int = 1, use_fp16: bool = False,
                 use_tensorrt: bool = False, use_onnx: bool = False, ir_optim: bool = True,
                 max_batch_size: int = 8, optim_cache_dir: Optional[str] = None):
        self.files = find_model_files(model_dir)
        if (use_fp16 or use_tensorrt) and not use_gpu:
            logger.warning("use_fp16/use_tensorrt only apply on GPU (use_gpu: true); ignored on CPU")
            use_fp16 = use_tensorrt = False
        if use_onnx:
            self._session = _onnx_session(self.files, use_gpu, cpu_num_threads)
            threads = self._session.get_session_options().intra_op_num_threads
            self.backend = "onnxruntime" + ("" if use_gpu else f", {threads} CPU threads")
            return
        self._session = None
        self._settings = (use_gpu, gpu_mem, gpu_id, enable_mkldnn, cpu_num_threads, use_fp16, use_tensorrt,
                          ir_optim, max_batch_size, optim_cache_dir)
        self._create()

    def _create(self) -> None:
        from paddle import inference
        use_gpu, _, _, _, _, use_fp16, use_tensorrt = self._settings[:7]
        self.config = _paddle_config(self.files, *self._settings)
        self._predictor = inference.create_predictor(self.config)
        self._input = self._predictor.get_input_handle(self._predictor.get_input_names()[0])
        self._output = self._predictor.get_output_handle(self._predictor.get_output_names()[0])
        self.backend = "paddle.inference " + ("gpu" if use_gpu else "cpu") + \
            (" tensorrt" if use_tensorrt else "") + (" fp16" if use_fp16 else "") + \
            (" onednn" if not use_gpu and self.config.mkldnn_enabled() else "") + \
            ("" if use_gpu else f", {self.config.cpu_math_library_num_threads()} CPU threads")  # read back

    def _without_onednn(self, error: Exception) -> bool:
        """Paddle's oneDNN path lacks some ops' attributes (HRNet's interpolation scales on Paddle
        3.3.1: ``NotImplementedError``): rebuild without oneDNN, once. True if it did."""
        if self._settings[0] or not self.config.mkldnn_enabled():
            return False
        logger.warning("oneDNN cannot run this model (%s: %s); running it without oneDNN", type(error).__name__,
                       str(error).strip().splitlines()[0][:200])
        self._settings = self._settings[:3] + (False,) + self._settings[4:]
        self._create()
        return True

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run one float32 ``[N, C, H, W]`` batch; returns the model's single output."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self._session is not None:
            name = self._session.get_inputs()[0].name
            return self._session.run(None, {name: batch})[0]
        try:
            return self._run(batch)
        except NotImplementedError as e:
            if not self._without_onednn(e):
                raise
            return self._run(batch)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        self._input.reshape(list(batch.shape))
        self._input.copy_from_cpu(batch)
        self._predictor.run()
        return self._output.copy_to_cpu()


def _paddle_config(files: ModelFiles, use_gpu: bool, gpu_mem: int, gpu_id: int, enable_mkldnn: bool,
                   cpu_num_threads: int, use_fp16: bool, use_tensorrt: bool, ir_optim: bool,
                   max_batch_size: int, optim_cache_dir: Optional[str]):
    if not files.model_file:
        raise ConfigError("Global.use_onnx", f"{files.model_dir} holds only {files.onnx_file}", "set use_onnx: true")
    return inference_config(files.model_file, files.params_file, use_gpu, gpu_mem, gpu_id, enable_mkldnn,
                            cpu_num_threads, use_fp16, use_tensorrt, ir_optim, max_batch_size, optim_cache_dir)


def _onnx_session(files: ModelFiles, use_gpu: bool, cpu_num_threads: int):
    if not files.onnx_file:
        raise ConfigError("Global.use_onnx", f"{files.model_dir} has no inference.onnx",
                          "export with tools/export_model.py --onnx, or set use_onnx: false")
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("Global.use_onnx", "onnxruntime is not installed", "pip install -e .[onnx]") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = cpu_num_threads
    providers = (["CUDAExecutionProvider"] if use_gpu else []) + ["CPUExecutionProvider"]
    return ort.InferenceSession(files.onnx_file, sess_options=options, providers=providers)
