"""Write an export into a hidden sibling directory, then swap it into place.

An interrupted export leaves the previous model (or nothing) at the target, never a mix of
old and new files (the swap is ``ppfreeze.utils.io.staged_directory``, shared with the
gallery index). An existing target is replaced only if it holds nothing but export files.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from ..config.errors import ConfigError
from ..utils import io
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
    """Yield an empty temporary directory; on success it replaces ``target`` (``ppfreeze.utils.io``)."""
    with io.staged_directory(target, check=lambda t: check_replaceable(t, key)) as staging:
        yield staging

