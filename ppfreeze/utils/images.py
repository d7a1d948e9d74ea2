"""Resolve ``infer_imgs`` (one image, a folder, or a text file listing images) and preprocess them."""
from __future__ import annotations

import os
from typing import Any, Callable, List, Sequence, Tuple

from ..config.errors import ConfigError
from .text import iter_text_lines

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def list_images(path: str, key: str = "Infer.infer_imgs") -> List[str]:
    """Return the image paths named by ``path`` (sorted for folders)."""
    if not path or not os.path.exists(path):
        raise ConfigError(key, f"path not found: {path!r}", "give an image, a folder of images or a .txt list")
    if os.path.isdir(path):
        files = sorted(os.path.join(root, f) for root, _, names in os.walk(path) for f in names
                       if f.lower().endswith(IMAGE_EXTENSIONS))
    elif path.lower().endswith(".txt"):
        base = os.path.dirname(path)
        files = [ln.split()[0] if ln.split() else "" for _, ln in iter_text_lines(path, key)]
        files = [p if os.path.isabs(p) else os.path.join(base, p) for p in files if p]
    else:
        files = [path]
    if not files:
        raise ConfigError(key, f"no images with extensions {IMAGE_EXTENSIONS} under {path!r}")
    return files


def batched(items: List[str], batch_size: int) -> List[List[str]]:
    """Split ``items`` into consecutive chunks of ``batch_size``."""
    return [items[i:i + batch_size] for i in range(0, len(items), max(1, batch_size))]


def read_bytes(path: str) -> bytes:
    """The raw file bytes (``DecodeImage`` decodes them, as in PaddleClas)."""
    with open(path, "rb") as f:
        return f.read()


def preprocess_images(paths: Sequence[str],
                      ops: Sequence[Callable]) -> Tuple[List[Any], List[str], List[Tuple[str, str]]]:
    """Read and transform each image; one that cannot be used does not stop the others.

    Returns ``(arrays, their paths, [(path, what was wrong), ...])``. An unreadable, empty,
    undecodable or damaged file (``OSError`` / ``ValueError`` from reading or an op) is a
    failure of that image; a configuration mistake (``ConfigError``) still stops everything.
    """
    from ..data.preprocess import transform
    arrays, good, failed = [], [], []
    for path in paths:
        try:
            arrays.append(transform(read_bytes(path), ops))
        except ConfigError:
            raise
        except (OSError, ValueError) as e:
            failed.append((path, str(e)))
            continue
        good.append(path)
    return arrays, good, failed
