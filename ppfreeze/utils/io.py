"""Atomic file writes: a crash mid-write never replaces a good file with a broken one."""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Callable


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
