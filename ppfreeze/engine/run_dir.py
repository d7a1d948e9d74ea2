"""One training run per output directory, and no silent reuse of an earlier run's directory.

- :class:`OutputDirLock`: ``<output_dir>/.ppfreeze.lock``, held with ``flock`` for the whole run
  (rank 0 under data parallel). The kernel drops the lock when its process dies, however it
  dies, so a lock left by a killed run is taken over (with a log line naming the dead process)
  while one held by a live run stops the second run with a ConfigError naming the holder.
- :func:`check_reuse`: a directory that already holds checkpoints is refused unless the run
  resumes (``Global.checkpoints``: a path or ``auto``) or ``Global.overwrite: true`` says to
  replace them.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import socket
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional

from ..config.errors import ConfigError
from .checkpoint_store import CheckpointStore

logger = logging.getLogger("ppfreeze")

LOCK_FILE = ".ppfreeze.lock"


class OutputDirLock:
    """An exclusive, crash-safe lock on an output directory (POSIX ``flock``).

    Args:
        directory: the run's output directory (created if missing).
    """

    def __init__(self, directory: str):
        self.directory = os.path.abspath(directory)
        self.path = os.path.join(self.directory, LOCK_FILE)
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        """Take the lock or raise ConfigError naming the run that holds it."""
        import fcntl
        os.makedirs(self.directory, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise ConfigError("Global.output_dir", f"{self.directory} is in use by another training run "
                                                       f"({_describe(holder)})",
                                  "wait for it to finish or give this run another Global.output_dir") from None
            if _same_file(fd, self.path):  # not a lock file its holder removed meanwhile
                break
            os.close(fd)
        previous = _read_holder(fd)
        if previous:  # its process died holding it (a clean release removes the file)
            logger.warning("Output directory lock %s was left by %s, which is no longer running: taking it over",
                           self.path, _describe(previous))
        _write_holder(fd)
        self._fd = fd

    def release(self) -> None:
        """Give the lock up and remove the lock file."""
        if self._fd is None:
            return
        try:
            os.remove(self.path)  # while still holding it: a waiter then finds a new file, not this one
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "OutputDirLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _same_file(fd: int, path: str) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _read_holder(fd: int) -> Dict[str, Any]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 4096)
        return json.loads(data) if data else {}
    except (OSError, ValueError):
        return {"pid": "?", "note": "unreadable lock file"}


def _write_holder(fd: int) -> None:
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "since": datetime.datetime.now().isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(info).encode())
    os.fsync(fd)


def _describe(holder: Dict[str, Any]) -> str:
    if not holder:
        return "a process that has not written its name yet"
    return f"pid {holder.get('pid')} on {holder.get('host', '?')}, started {holder.get('since', '?')}"


def check_reuse(store: CheckpointStore, glob: Dict[str, Any]) -> None:
    """Refuse to train into a directory holding checkpoints unless resuming or overwriting.

    ``Global.overwrite: true`` deletes the earlier checkpoints (logged) so that no ``epoch_N`` of
    the earlier run stays mixed with the new run's.
    """
    names = store.names()
    if not names or glob.get("checkpoints"):
        return
    if glob.get("overwrite"):
        removed = store.remove_all()
        logger.warning("Global.overwrite: removed the earlier run's checkpoints in %s: %s", store.directory,
                       ", ".join(removed))
        return
    shown = ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")
    raise ConfigError("Global.output_dir", f"{store.directory} already holds checkpoints of an earlier run ({shown})",
                      "continue that run with -o Global.checkpoints=auto, write to another -o Global.output_dir, "
                      "or replace them with -o Global.overwrite=true")


@contextmanager
def claim_output_dir(directory: str, glob: Dict[str, Any], is_main: bool) -> Iterator[CheckpointStore]:
    """Lock ``directory`` (rank 0), remove what interrupted saves left, refuse silent reuse;
    yields the directory's :class:`CheckpointStore`. Other ranks (which never write checkpoints)
    only get the store."""
    store = CheckpointStore(directory)
    if not is_main:
        yield store
        return
    with OutputDirLock(directory):
        removed = store.clean()
        if removed:
            logger.info("Removed %d leftovers of an interrupted save in %s: %s", len(removed), directory,
                        ", ".join(removed[:5]))
        check_reuse(store, glob)
        yield store
