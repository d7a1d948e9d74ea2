"""One writer at a time per gallery index: an ``fcntl`` lock on ``<index_dir>.lock``.

Saving replaces the whole index directory (``GalleryIndex.save``), so two writers that each
load -> add -> save would silently keep only the last one's items. A writer holds
:func:`index_lock` from its load to its save; a second writer waits (bounded by ``timeout``)
and then loads the first one's result. The lock file sits next to the directory because the
directory itself is swapped by rename; it is removed on release. The kernel drops the lock when
its process dies, so a killed writer never leaves a stale lock behind (only the empty file).

``GalleryIndex.save`` takes the lock too (re-entrant within a thread) and refuses to overwrite
an index that another writer changed after this one was loaded, so a writer that skips
:func:`index_lock` gets an error instead of losing someone else's update.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager, suppress
from typing import Dict, Iterator, Optional

try:
    import fcntl
except ImportError:  # Windows: no advisory locks through fcntl
    fcntl = None

from ..errors import EXIT_TRAINING, PPFreezeError

logger = logging.getLogger("ppfreeze")

LOCK_SUFFIX = ".lock"
DEFAULT_LOCK_TIMEOUT = 300.0   # seconds a writer waits for another one to finish
_POLL_SECONDS = 0.05

_local = threading.local()     # lock path -> depth, for the current thread (re-entrancy)


class IndexBusyError(PPFreezeError):
    """Another writer held the index's lock for longer than the caller was willing to wait."""

    kind = "gallery index busy"
    exit_code = EXIT_TRAINING

    def __init__(self, index_dir: str, waited: float, holder: Optional[str]):
        self.index_dir = index_dir
        held_by = f" by process {holder}" if holder else ""
        super().__init__(f"{index_dir}: another build_gallery / writer holds its lock "
                         f"({lock_path(index_dir)}){held_by}; gave up after {waited:.1f} s (wait for it to "
                         f"finish, or raise IndexProcess.lock_timeout)")


def lock_path(index_dir: str) -> str:
    """The lock file of ``index_dir``: ``<index_dir>.lock`` beside it."""
    return os.path.abspath(index_dir) + LOCK_SUFFIX


def _held() -> Dict[str, int]:
    if not hasattr(_local, "held"):
        _local.held = {}
    return _local.held


@contextmanager
def index_lock(index_dir: str, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the exclusive write lock of ``index_dir`` for the block.

    Waits up to ``timeout`` seconds (0: not at all) for another holder, then raises
    :class:`IndexBusyError`. Re-entrant within one thread; other threads and processes wait.
    """
    path = lock_path(index_dir)
    held = _held()
    if path in held:
        held[path] += 1
        try:
            yield
        finally:
            held[path] -= 1
        return
    if fcntl is None:
        logger.warning("%s: no file locking on this platform; concurrent writers may lose updates", index_dir)
        yield
        return
    fd = _open_locked(path, index_dir, float(timeout))
    try:
        os.ftruncate(fd, 0)   # a killed holder's pid may still be there
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)   # for the messages of those who wait
        held[path] = 1
        try:
            yield
        finally:
            del held[path]
            with suppress(FileNotFoundError):
                os.unlink(path)   # while still holding it: a waiter then sees a stale inode and retries
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _open_locked(path: str, index_dir: str, timeout: float) -> int:
    """Open ``path`` and lock it; retry when the holder removed the file meanwhile."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    deadline = time.monotonic() + timeout
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            _acquire(fd, index_dir, deadline)
            if _same_file(fd, path):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _same_file(fd: int, path: str) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _acquire(fd: int, index_dir: str, deadline: float) -> None:
    start = time.monotonic()
    announced = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or None
        if time.monotonic() >= deadline:
            raise IndexBusyError(index_dir, time.monotonic() - start, holder)
        if not announced:
            logger.info("%s is being written by process %s; waiting up to %.0f s for it", index_dir,
                        holder or "?", deadline - start)
            announced = True
        time.sleep(_POLL_SECONDS)
