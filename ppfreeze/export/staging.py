"""Write an export into a hidden sibling directory, then swap it into place.

An interrupted export leaves the previous model (or nothing) at the target, never a mix of
old and new files. An existing target is replaced only if it holds nothing but export files.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from typing import Iterator

from ..config.errors import ConfigError
from .model_files import PREFIX

CLASS_ID_MAP = "class_id_map.txt"


def _is_export_file(name: str) -> bool:
    return name.startswith(PREFIX + ".") or name == CLASS_ID_MAP


def check_replaceable(target: str, key: str) -> None:
    """Refuse a target that is a file or a directory holding files we did not write."""
    if not os.path.exists(target):
        return
    if not os.path.isdir(target):
        raise ConfigError(key, f"{target} exists and is not a directory", "choose a directory for the model")
    foreign = sorted(n for n in os.listdir(target) if not _is_export_file(n))
    if foreign:
        raise ConfigError(key, f"{target} already holds files that are not part of an exported model: "
                               f"{', '.join(foreign[:5])}", "export into a new or empty directory")


@contextmanager
def staged_directory(target: str, key: str = "Global.save_inference_dir") -> Iterator[str]:
    """Yield an empty temporary directory; on success it replaces ``target``."""
    check_replaceable(target, key)
    target = os.path.abspath(target)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.tmp-", dir=parent)
    try:
        yield staging
        _swap_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_into_place(staging: str, target: str) -> None:
    if not os.path.exists(target):
        os.rename(staging, target)
        return
    old = staging + ".old"
    os.rename(target, old)
    os.rename(staging, target)
    shutil.rmtree(old, ignore_errors=True)
