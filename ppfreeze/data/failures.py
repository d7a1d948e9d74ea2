"""Failures while loading a sample, carried from the loading thread or worker to the main process.

Paddle's ``DataLoader`` hangs when a dataset raises: with ``num_workers: 0`` the exception ends
its reader thread while the main thread waits on the batch queue forever; with workers the
exception is re-raised in that same kind of thread. So the loader never lets a sample's
exception escape (``ppfreeze.data.loader``): it turns it into a :class:`SampleFailure` (plain,
picklable data), the batch carries a :class:`BatchStatus`, and the main process raises the
failure as the error it was, or skips a bad image when ``skip_bad_images`` is on.

Paddle-free, like :mod:`ppfreeze.errors`.
"""
from __future__ import annotations

import traceback
from typing import Any, List, Optional

from ..config.errors import ConfigError
from ..errors import DataIntegrityError


class BadImageError(DataIntegrityError, ValueError):
    """An image file cannot be used: unreadable, empty, not an image, truncated or corrupt.

    Args:
        path: the image file.
        where: where it was listed, e.g. ``listed at data/train_list.txt:12``.
        reason: what is wrong with it.
        hint: what to do (the loader adds the ``skip_bad_images`` key of the section).
    """

    def __init__(self, path: str, where: str, reason: str, hint: Optional[str] = None):
        self.where = where
        self.reason = reason
        super().__init__(path, f"cannot use this image ({where}): {reason}",
                         hint or "fix or replace the file, or remove its line from the list")

    def __reduce__(self):
        return type(self), (self.path, self.where, self.reason, self.hint)


class SampleFailure:
    """What went wrong while loading dataset item ``index``, as plain data (crosses processes).

    ``kind``: ``image`` (a :class:`BadImageError`: the only kind ``skip_bad_images`` skips),
    ``config`` (a ConfigError), ``data`` (another DataIntegrityError) or ``bug`` (any other
    exception; its traceback text is kept).
    """

    __slots__ = ("index", "kind", "fields")

    def __init__(self, index: Any, kind: str, **fields: Any):
        self.index = index
        self.kind = kind
        self.fields = fields

    @classmethod
    def capture(cls, error: BaseException, index: Any) -> "SampleFailure":
        """Describe ``error`` (raised while loading item ``index``)."""
        if isinstance(error, BadImageError):
            return cls(index, "image", path=error.path, where=error.where, reason=error.reason)
        if isinstance(error, ConfigError):
            return cls(index, "config", key=error.key, message=error.message, hint=error.hint)
        if isinstance(error, DataIntegrityError):
            return cls(index, "data", path=error.path, message=error.message, hint=error.hint)
        return cls(index, "bug", text="".join(traceback.format_exception(type(error), error, error.__traceback__)))

    @property
    def skippable(self) -> bool:
        """Whether ``skip_bad_images`` may skip this sample (a bad image file, nothing else)."""
        return self.kind == "image"

    def describe(self) -> str:
        """One line for the log: the file, where it was listed and what is wrong."""
        f = self.fields
        if self.kind == "image":
            return f"{f['path']} ({f['where']}): {f['reason']}"
        return str(self.to_exception())

    def to_exception(self, skip_key: str = "") -> Exception:
        """The error to raise in the main process (``skip_key`` names the skip_bad_images switch)."""
        f = self.fields
        if self.kind == "image":
            hint = "fix or replace the file, or remove its line from the list"
            if skip_key:
                hint += f"; or set {skip_key}: true to skip such images"
            return BadImageError(f["path"], f["where"], f["reason"], hint)
        if self.kind == "config":
            return ConfigError(f["key"], f["message"], f["hint"])
        if self.kind == "data":
            return DataIntegrityError(f["path"], f["message"], f["hint"])
        where = "" if self.index is None else f" item {self.index}"
        return RuntimeError(f"loading dataset{where} failed in the data loader:\n{f['text']}")


class BatchStatus:
    """Rides at the end of a batch whose loading went wrong somewhere.

    ``fatal``: the first failure must stop the run. Otherwise ``failures`` were skipped bad
    images and ``empty`` says that no sample of the batch was left.
    """

    __slots__ = ("failures", "fatal", "empty")

    def __init__(self, failures: List[SampleFailure], fatal: bool = False, empty: bool = False):
        self.failures = failures
        self.fatal = fatal
        self.empty = empty
