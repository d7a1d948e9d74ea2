"""Process-level set-up: CPU threads, device, seeds, distributed environment."""
from __future__ import annotations

import logging
import os
import random
from typing import Any, Dict

import numpy as np

from ..config.errors import ConfigError

logger = logging.getLogger("ppfreeze")


def configure_threads(global_cfg: Dict[str, Any]) -> int:
    """Set the CPU thread count from ``Global.num_threads`` BEFORE paddle is imported.

    Paddle pins OMP_NUM_THREADS=1 when it is unset (docs/design.md), which halves CPU training
    speed on 2 cores; we default to every core unless the user set the variable themselves.
    """
    n = global_cfg.get("num_threads")
    if n is None:
        # processes started together by paddle.distributed.launch share the cores
        local_procs = int(os.environ.get("PADDLE_LOCAL_SIZE", "1") or 1)
        n = int(os.environ.get("OMP_NUM_THREADS", 0)) or max(1, (os.cpu_count() or 1) // local_procs)
    if n < 1:
        raise ConfigError("Global.num_threads", f"must be >= 1, got {n}")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    return n


def setup_device(device: str) -> str:
    """Select ``cpu`` / ``gpu`` / ``auto`` (gpu when compiled with CUDA and one is visible)."""
    import paddle
    has_gpu = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if device == "auto":
        device = "gpu" if has_gpu else "cpu"
    if device.startswith("gpu") and not has_gpu:
        raise ConfigError("Global.device", f"'{device}' requested but this paddle build has no usable GPU "
                                           f"(compiled with CUDA: {paddle.device.is_compiled_with_cuda()})",
                          "use Global.device=cpu or auto, or install paddlepaddle-gpu")
    if device == "gpu" and paddle.distributed.get_world_size() > 1:
        device = f"gpu:{paddle.distributed.ParallelEnv().dev_id}"
    paddle.set_device(device)
    return device


def seed_everything(seed: int) -> None:
    """Seed paddle, numpy and ``random`` (CPU runs are then bit-deterministic)."""
    import paddle
    paddle.seed(seed)
    np.random.seed(seed % (2 ** 32))
    random.seed(seed)


def world_size() -> int:
    import paddle
    return paddle.distributed.get_world_size()


def is_main_process() -> bool:
    """True on rank 0 (the only rank that writes logs, checkpoints and reports)."""
    import paddle
    return paddle.distributed.get_rank() == 0
