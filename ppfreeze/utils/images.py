"""Resolve ``infer_imgs`` (one image, a folder, or a text file listing images)."""
from __future__ import annotations

import os
from typing import List

from ..config.errors import ConfigError

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
        with open(path, encoding="utf-8") as f:
            files = [ln.split()[0] if ln.split() else "" for ln in f]
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
