"""Process-level set-up: CPU threads, device, seeds, distributed environment."""
from __future__ import annotations

import logging
import random
from typing import Any, Dict

import numpy as np

from .. import runtime_env
from ..config.errors import ConfigError

logger = logging.getLogger("ppfreeze")


def configure_threads(global_cfg: Dict[str, Any]) -> int:
    """Apply ``Global.num_threads`` to this process (paddle is imported here) and log the count
    in effect, read back from the OpenMP runtime; returns the count.

    Tools decide the threads before paddle is imported (``ppfreeze/runtime_env.py``, called by
    ``ppfreeze/cli.py``); this applies the same decision again for library use, where paddle
    came first and pinned one thread.
    """
    count = runtime_env.configure_threads(global_cfg.get("num_threads"))
    logger.info(runtime_env.describe_threads())
    return count


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
