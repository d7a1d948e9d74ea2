"""One place that turns options into a ``paddle.inference.Config`` (deploy predictor and prefix engine).

Facts that shaped it (Paddle 3.3.1, docs/design.md): ``enable_memory_optim()`` makes
``create_predictor`` fail on PIR models, so it is never called; oneDNN is on by default in the
CPU build, so "off" must call ``disable_mkldnn()`` explicitly; with oneDNN, the common
subexpression and in-place passes together corrupt a value that two ops read (ConvNeXt's
channels-first LayerNorm came out 140 % wrong), so the first of them is switched off.
"""
from __future__ import annotations

from typing import Any, Optional

# with oneDNN kernels, this pass and inplace_pass together give wrong results (docs/design.md)
ONEDNN_BROKEN_PASS = "common_subexpression_elimination_pass"


def inference_config(model_file: str, params_file: str, use_gpu: bool = False, gpu_mem: int = 8000,
                     gpu_id: int = 0, enable_mkldnn: bool = True, cpu_num_threads: int = 1, use_fp16: bool = False,
                     use_tensorrt: bool = False, ir_optim: bool = True, max_batch_size: int = 8,
                     optim_cache_dir: Optional[str] = None) -> Any:
    """A ``paddle.inference.Config`` for ``model_file`` + ``params_file`` (paddle imported on call).

    ``use_fp16`` / ``use_tensorrt`` apply on GPU only; ``optim_cache_dir`` saves the optimised
    program there (what really runs).
    """
    from paddle import inference
    config = inference.Config(model_file, params_file)
    config.disable_glog_info()
    config.switch_ir_optim(ir_optim)
    if use_gpu:
        precision = inference.PrecisionType.Half if use_fp16 else inference.PrecisionType.Float32
        config.enable_use_gpu(gpu_mem, gpu_id, precision)
        if use_tensorrt:
            config.enable_tensorrt_engine(workspace_size=1 << 30, max_batch_size=max_batch_size,
                                          min_subgraph_size=3, precision_mode=precision,
                                          use_static=False, use_calib_mode=False)
    else:
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(cpu_num_threads)
        if enable_mkldnn:
            config.enable_mkldnn()
            config.delete_pass(ONEDNN_BROKEN_PASS)
        else:
            config.disable_mkldnn()  # oneDNN is the CPU build's default: "off" must be explicit
    if optim_cache_dir:
        config.enable_save_optim_model(True)
        config.set_optim_cache_dir(optim_cache_dir)
    return config
