"""Logging to the console and ``<output_dir>/train.log`` (rank 0 only)."""
from __future__ import annotations

import datetime
import logging
import os
import sys
from typing import Optional

LOGGER_NAME = "ppfreeze"
_FORMAT = "[%(asctime)s] %(levelname)s: %(message)s"


def setup_logger(log_file: Optional[str] = None, rank: int = 0) -> logging.Logger:
    """Configure the ``ppfreeze`` logger once per process; later calls add/replace the file handler."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO if rank == 0 else logging.ERROR)
    logger.propagate = False  # paddle installs a root handler: propagating would print every line twice
    fmt = logging.Formatter(_FORMAT, datefmt="%Y/%m/%d %H:%M:%S")
    consoles = [h for h in logger.handlers if getattr(h, "_ppfreeze_console", False)]
    if consoles:
        consoles[0].stream = sys.stdout  # follow a replaced sys.stdout (tests, notebooks)
    else:
        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(fmt)
        console._ppfreeze_console = True  # type: ignore[attr-defined]
        logger.addHandler(console)
    for h in [h for h in logger.handlers if getattr(h, "_ppfreeze_file", False)]:
        logger.removeHandler(h)
        h.close()
    if log_file and rank == 0:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        fh = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        fh.setFormatter(fmt)
        fh._ppfreeze_file = True  # type: ignore[attr-defined]
        logger.addHandler(fh)
    return logger


def format_eta(seconds: float) -> str:
    """``1 day, 2:03:04`` style ETA (PaddleClas prints timedelta)."""
    return str(datetime.timedelta(seconds=int(max(seconds, 0))))
