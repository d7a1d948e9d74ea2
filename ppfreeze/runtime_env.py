"""CPU threads of this process, decided before paddle is imported (no paddle import here), and
the default count of data loader workers that goes with them.

Importing paddle sets ``OMP_NUM_THREADS=1`` when it is unset (docs/design.md), so a process
that lets paddle decide trains on one core of N. Every tool and deploy script therefore calls
:func:`configure_threads` right after reading its config and before anything imports paddle:

- an explicit count (``Global.num_threads``; deploy: ``Global.cpu_num_threads``) wins;
- else ``OMP_NUM_THREADS`` set by the user is respected;
- else the default: the cores this process may run on (its CPU affinity) divided by the
  processes ``paddle.distributed.launch`` started on this machine.

The count is written to ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` (read by the OpenMP and MKL
runtimes when paddle loads them); when paddle is already imported (library use, tests calling
tools in-process) it is applied with ``paddle.base.core.set_num_threads``.
:func:`threads_in_effect` reads the count back from the OpenMP runtime paddle's kernels call.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

from .config.errors import ConfigError

logger = logging.getLogger("ppfreeze")

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
# What paddle writes on import when OMP_NUM_THREADS is unset (paddle/base/__init__.py).
_PADDLE_WRITES = "1"
# Variables paddle.distributed.launch gives the processes it starts.
_LAUNCH_VARS = ("PADDLE_LOCAL_SIZE", "PADDLE_TRAINER_ID", "PADDLE_TRAINERS_NUM")

# OMP_NUM_THREADS as this module first saw it; trustworthy only if paddle was not imported yet.
_SEEN_AT_IMPORT: Tuple[bool, Optional[str]] = ("paddle" not in sys.modules, os.environ.get("OMP_NUM_THREADS"))


@dataclass(frozen=True)
class ThreadChoice:
    """The decided thread count and why (``source`` is shown in the log)."""

    count: int
    source: str


_current: Optional[ThreadChoice] = None


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity; ``os.cpu_count()`` where that is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):   # not Linux
        return max(1, os.cpu_count() or 1)


def local_process_count(environ: Mapping[str, str] = os.environ) -> int:
    """Processes ``paddle.distributed.launch`` started on this machine (1 outside a launch)."""
    size = environ.get("PADDLE_LOCAL_SIZE", "")
    if size.isdigit() and int(size) > 0:
        return int(size)
    # older launchers: count the endpoints on this process's host
    current = environ.get("PADDLE_CURRENT_ENDPOINT", "")
    endpoints = [e for e in environ.get("PADDLE_TRAINER_ENDPOINTS", "").split(",") if e]
    if current and endpoints:
        host = current.rsplit(":", 1)[0]
        return max(1, sum(1 for e in endpoints if e.rsplit(":", 1)[0] == host))
    return 1


def _initial_environ(pid: int) -> Optional[Dict[str, str]]:
    """The environment process ``pid`` was started with (Linux /proc), or None when unknown."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def user_omp_threads(environ: Mapping[str, str] = os.environ) -> Optional[str]:
    """``OMP_NUM_THREADS`` as the user set it, or None when it is unset or paddle wrote it.

    Paddle writes "1" when importing it finds the variable unset, in this process or in the
    ``paddle.distributed.launch`` process whose environment we inherit; such a "1" is not
    the user's choice. Where the start-up environment cannot be read, a "1" seen only after
    paddle was imported counts as paddle's (``Global.num_threads: 1`` says it explicitly).
    """
    clean, seen = _SEEN_AT_IMPORT
    value = seen if clean else environ.get("OMP_NUM_THREADS")
    if value is None or value.strip() != _PADDLE_WRITES:
        return value
    launched = any(v in environ for v in _LAUNCH_VARS)
    if clean and not launched:
        return value
    starts = [_initial_environ(os.getpid())] + ([_initial_environ(os.getppid())] if launched else [])
    if any(start is None for start in starts):
        return None
    return value if all("OMP_NUM_THREADS" in start for start in starts) else None


def decide_threads(requested: Optional[int] = None, key: str = "Global.num_threads",
                   environ: Mapping[str, str] = os.environ) -> ThreadChoice:
    """The thread count for ``requested`` (None: the user's OMP_NUM_THREADS, else the default)."""
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise ConfigError(key, f"expected an integer >= 1 (CPU threads), got {requested!r}",
                              f"remove it to use every core ({available_cores()} here)")
        return ThreadChoice(requested, key)
    user = user_omp_threads(environ)
    if user is not None:
        try:   # OpenMP also accepts a nesting list such as "4,2": the first level is ours
            count = int(user.split(",")[0])
        except ValueError:
            count = 0
        if count < 1:
            raise ConfigError("OMP_NUM_THREADS", f"the environment variable is {user!r}, expected an integer >= 1",
                              f"unset it, or set {key}")
        return ThreadChoice(count, "OMP_NUM_THREADS set in the environment")
    return default_threads(environ)


def default_threads(environ: Mapping[str, str] = os.environ) -> ThreadChoice:
    """Available cores / processes ``paddle.distributed.launch`` started on this machine (at least 1)."""
    cores, procs = available_cores(), local_process_count(environ)
    per_process = "" if procs == 1 else f" / {procs} processes on this machine"
    return ThreadChoice(max(1, cores // procs), f"default: {cores} available cores{per_process}")


def configure_threads(requested: Optional[int] = None, key: str = "Global.num_threads") -> int:
    """Decide the thread count (:func:`decide_threads`) and apply it to this process; returns it.

    Call it before paddle is imported; after that the count is applied through
    ``paddle.base.core.set_num_threads`` (the OpenMP and MKL runtimes' own setters).
    """
    global _current
    choice = decide_threads(requested, key)
    for var in THREAD_VARS:
        os.environ[var] = str(choice.count)
    if "paddle" in sys.modules:
        from paddle.base import core
        core.set_num_threads(choice.count)
    _current = choice
    return choice.count


def current_choice() -> Optional[ThreadChoice]:
    """The last :func:`configure_threads` decision of this process (None before the first)."""
    return _current


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _paddle_library() -> Optional[str]:
    """Path of the loaded ``libpaddle.so`` (from /proc/self/maps), or None."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rsplit(None, 1)[-1]
                if os.path.basename(path).startswith("libpaddle."):
                    return path
    except OSError:
        pass
    return None


def _defining_library(func: ctypes._CFuncPtr) -> str:   # type: ignore[name-defined]
    """File name of the shared library that defines ``func`` (dladdr), or '?'."""
    info = _DlInfo()
    for name in (None, ctypes.util.find_library("dl")):
        try:
            dladdr = ctypes.CDLL(name).dladdr
        except (OSError, AttributeError, TypeError):
            continue
        if dladdr(ctypes.cast(func, ctypes.c_void_p), ctypes.byref(info)) and info.dli_fname:
            return os.path.basename(info.dli_fname.decode(errors="replace"))
    return "?"


def threads_in_effect() -> Optional[Tuple[int, str]]:
    """``(omp_get_max_threads(), library)`` of the OpenMP runtime paddle's kernels call, read from
    this process; None before paddle is loaded or where it cannot be read (not Linux).

    The symbol is looked up through ``libpaddle.so``'s own handle, so it resolves to the runtime
    paddle is bound to (libiomp5 in the CPU build, although libgomp is loaded too).
    """
    path = _paddle_library()
    if path is None:
        return None
    try:
        func = ctypes.CDLL(path).omp_get_max_threads
    except (OSError, AttributeError):
        return None
    func.restype = ctypes.c_int
    return int(func()), _defining_library(func)


def describe_threads() -> str:
    """One log line: the threads in effect (read back) and why that count was chosen."""
    choice = _current
    why = f" ({choice.source})" if choice else " (not configured by ppfreeze)"
    read = threads_in_effect()
    if read is None:
        return f"CPU threads: {choice.count if choice else '?'}{why}; could not read the OpenMP runtime back"
    count, library = read
    mismatch = "" if choice is None or choice.count == count else f"; WARNING: {choice.count} was requested"
    return f"CPU threads in effect: {count} (omp_get_max_threads() of {library}){why}{mismatch}"


# Worker processes per training process at most, by default (PaddleClas's configs use 4 per GPU).
MAX_DEFAULT_WORKERS = 4
# Cores per default worker process: below this many cores, a loading thread in this process.
CORES_PER_DEFAULT_WORKER = 4


def default_num_workers(environ: Mapping[str, str] = os.environ) -> int:
    """DataLoader worker processes when a config sets no ``loader.num_workers``.

    0 (Paddle's loading thread in this process) below 4 cores: on 2 cores it keeps decoding and
    augmenting 224-px images ahead of training at the lowest CPU cost (docs/design.md, measured).
    From 4 cores, one worker process per 4 cores of this process's share, at most
    ``MAX_DEFAULT_WORKERS``: training consumes images faster there, and workers do not contend
    for the GIL. Always 0 where workers are not forked (not Linux: spawned workers re-import
    everything).
    """
    if not sys.platform.startswith("linux"):
        return 0
    cores = available_cores() // local_process_count(environ)
    return min(MAX_DEFAULT_WORKERS, cores // CORES_PER_DEFAULT_WORKER)
