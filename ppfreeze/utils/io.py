"""Atomic writes of files and whole directories: a crash never replaces good data with a broken copy."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

BACKUP_SUFFIX = ".previous"


def atomic_write(path: str, write_fn: Callable[[str], None]) -> None:
    """Call ``write_fn(tmp_path)`` then rename the temporary file onto ``path``.

    The temporary file lives in the same directory so the rename is atomic on POSIX.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        write_fn(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give files the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    def _w(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    atomic_write(path, _w)


def atomic_write_json(path: str, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n")


def atomic_paddle_save(obj: Any, path: str) -> None:
    """``paddle.save`` through a temporary file and rename."""
    import paddle
    atomic_write(path, lambda tmp: paddle.save(obj, tmp))


def file_sha256(path: str) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    import hashlib
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_dir(path: str) -> None:
    """Flush a directory entry (after a rename), where the platform allows opening directories."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(root: str) -> None:
    """Flush every file under ``root`` and the directories themselves to disk."""
    for directory, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(directory, name), "rb+") as f:
                os.fsync(f.fileno())
        fsync_dir(directory)


def backup_path(target: str) -> str:
    """Where :func:`replace_dir` keeps the previous ``target`` while it swaps (``<target>.previous``)."""
    return os.path.abspath(target) + BACKUP_SUFFIX


def replace_dir(staging: str, target: str) -> None:
    """Move the complete directory ``staging`` onto ``target``.

    The old ``target`` is renamed to ``<target>.previous`` first and removed only once the new
    one is in place; a failure in between renames it back. If the process dies between the two
    renames, ``<target>.previous`` holds the old, complete directory (readers say so).
    """
    target = os.path.abspath(target)
    backup = backup_path(target)
    if os.path.exists(backup):
        shutil.rmtree(backup)  # left by an interrupted swap; target (if any) is newer
    if os.path.exists(target):
        os.rename(target, backup)
        try:
            os.rename(staging, target)
        except BaseException:
            os.rename(backup, target)
            raise
        shutil.rmtree(backup)
    else:
        os.rename(staging, target)
    fsync_dir(os.path.dirname(target))


@contextmanager
def staged_directory(target: str, check: Optional[Callable[[str], None]] = None) -> Iterator[str]:
    """Yield an empty sibling directory of ``target``; when the block succeeds its files are
    flushed to disk and it replaces ``target`` (:func:`replace_dir`). On any failure ``target``
    is untouched and the staging directory removed.

    ``check(target)`` runs first (e.g. refuse a target that holds foreign files).
    """
    if check is not None:
        check(target)
    target = os.path.abspath(target)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.tmp-", dir=parent)
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; the result is an ordinary directory
    try:
        yield staging
        fsync_tree(staging)
        replace_dir(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

