"""Helpers shared by the preprocess ops: argument checks, resizing, padding, PIL round trips.

Argument checks raise :class:`ConfigError` keyed by the argument's name; ``create_operators``
prefixes the op's position in the config. Numbers may be given as PaddleClas's arithmetic
strings (``"1.0/3.0"``).
"""
from __future__ import annotations

import random
from typing import Any, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ...config.errors import ConfigError
from ...config.expr import to_number

Size = Union[int, Sequence[int]]

CV2_INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "bicubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
}
PIL_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "lanczos", "hamming")
# 'random' picks bilinear or bicubic per image (PaddleClas's ResizeImage / RandCropImage).
RANDOM_INTERPOLATION = "random"


# ----------------------------------------------------------------------------- argument checks
def positive_int(value: Any, key: str) -> int:
    """``value`` as a positive int (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(key, f"expected a positive integer, got {value!r}")
    return value


def non_negative_int(value: Any, key: str) -> int:
    """``value`` as an int >= 0 (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(key, f"expected an integer >= 0, got {value!r}")
    return value


def number(value: Any, key: str, low: Optional[float] = None, high: Optional[float] = None) -> float:
    """``value`` (a number or an arithmetic string) as a float within ``[low, high]``."""
    result = float(to_number(value, key))
    if (low is not None and result < low) or (high is not None and result > high):
        bounds = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise ConfigError(key, f"expected a number in {bounds}, got {value!r}")
    return result


def probability(value: Any, key: str) -> float:
    """A probability in [0, 1]."""
    return number(value, key, 0.0, 1.0)


def flag(value: Any, key: str) -> bool:
    """A YAML boolean."""
    if not isinstance(value, bool):
        raise ConfigError(key, f"expected true or false, got {value!r}")
    return value


def one_of(value: Any, key: str, options: Sequence[Any]) -> Any:
    """``value`` if it is one of ``options``."""
    if isinstance(value, bool) or value not in options:
        raise ConfigError(key, f"expected one of {', '.join(map(repr, options))}, got {value!r}")
    return value


def pair(value: Any, key: str, default: Optional[Tuple[float, float]] = None) -> Tuple[float, float]:
    """A ``[low, high]`` pair of numbers with ``low <= high`` (``None`` gives ``default``)."""
    if value is None and default is not None:
        return default
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(key, f"expected a [low, high] pair, got {value!r}")
    low, high = (number(v, key) for v in value)
    if low > high:
        raise ConfigError(key, f"expected low <= high, got {value!r}")
    return low, high


def _int_pair(size: Size, key: str, order: str) -> Tuple[int, int]:
    if isinstance(size, (list, tuple)):
        if len(size) != 2:
            raise ConfigError(key, f"expected an integer or a {order} pair, got {size!r}")
        return positive_int(size[0], key), positive_int(size[1], key)
    side = positive_int(size, key)
    return side, side


def size_wh(size: Size, key: str) -> Tuple[int, int]:
    """PaddleClas's ``size``: an int means a square, a pair is ``[width, height]``."""
    return _int_pair(size, key, "[width, height]")


def size_hw(size: Size, key: str) -> Tuple[int, int]:
    """paddle.vision's ``size``: an int means a square, a pair is ``[height, width]``."""
    return _int_pair(size, key, "[height, width]")


def color(value: Any, key: str, channels: int = 3) -> Tuple[float, ...]:
    """A fill colour: one number for every channel, or one number per channel."""
    if isinstance(value, (list, tuple)):
        if len(value) != channels:
            raise ConfigError(key, f"expected one number or {channels} numbers, got {value!r}")
        return tuple(number(v, key) for v in value)
    return (number(value, key),) * channels


def check_backend(backend: Any) -> str:
    """``backend``: 'cv2' or 'pil' (case-insensitive)."""
    if not isinstance(backend, str) or backend.lower() not in ("cv2", "pil"):
        raise ConfigError("backend", f"expected 'cv2' or 'pil', got {backend!r}")
    return backend.lower()


def cv2_interpolation(interpolation: Any, key: str = "interpolation") -> int:
    """A cv2 interpolation flag from a name (or a cv2 flag)."""
    if isinstance(interpolation, str) and interpolation.lower() in CV2_INTERPOLATIONS:
        return CV2_INTERPOLATIONS[interpolation.lower()]
    if isinstance(interpolation, int) and not isinstance(interpolation, bool) \
            and interpolation in CV2_INTERPOLATIONS.values():
        return interpolation
    raise ConfigError(key, f"unknown interpolation {interpolation!r}", f"use one of {', '.join(CV2_INTERPOLATIONS)}")


# ----------------------------------------------------------------------------- images
def to_pil(img: np.ndarray, op: str):
    """A uint8 HWC (or HW) array as a PIL image (what PaddleClas's PIL-based ops work on)."""
    from PIL import Image
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim not in (2, 3):
        got = f"{img.dtype} array of shape {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        raise ValueError(f"{op} works on uint8 HWC images (before NormalizeImage), got a {got}")
    return Image.fromarray(np.ascontiguousarray(img))


def from_pil(img) -> np.ndarray:
    """A PIL image back as a (writable) uint8 array."""
    return np.array(img)


def spatial_axes(img: np.ndarray, channel_first: bool) -> Tuple[int, int]:
    """(height axis, width axis) of an HWC or CHW image."""
    return (1, 2) if channel_first else (0, 1)


class Resizer:
    """Resize an HWC array to ``(w, h)`` with cv2 or PIL, as PaddleClas's ``backend`` picks.

    ``interpolation`` 'random' draws bilinear or bicubic per call from ``random``.
    """

    def __init__(self, interpolation: Union[None, str, int] = None, backend: str = "cv2"):
        self.backend = check_backend(backend)
        self.random = isinstance(interpolation, str) and interpolation.lower() == RANDOM_INTERPOLATION
        if self.random:
            names = ("bilinear", "bicubic")
            self.flags = tuple(self._flag(n) for n in names)
        else:
            self.flags = (self._flag(interpolation),)

    def _flag(self, interpolation):
        if interpolation is None or interpolation == -1:  # -1: old PaddleClas spelling of "default"
            interpolation = "bilinear"
        if self.backend == "cv2":
            return cv2_interpolation(interpolation)
        from PIL import Image  # only the PIL backend needs Pillow here
        if not isinstance(interpolation, str) or interpolation.lower() not in PIL_INTERPOLATIONS:
            raise ConfigError("interpolation", f"unknown interpolation {interpolation!r} for backend pil",
                              f"use one of {', '.join(PIL_INTERPOLATIONS)}, {RANDOM_INTERPOLATION}")
        return getattr(Image.Resampling, interpolation.upper())

    def __call__(self, img: np.ndarray, size_wh: Tuple[int, int]) -> np.ndarray:
        flag = random.choice(self.flags) if self.random else self.flags[0]
        if self.backend == "cv2":
            return cv2.resize(img, tuple(size_wh), interpolation=flag)
        from PIL import Image
        return np.asarray(Image.fromarray(np.ascontiguousarray(img)).resize(tuple(size_wh), flag))


PAD_MODES = {"constant": cv2.BORDER_CONSTANT, "edge": cv2.BORDER_REPLICATE,
             "reflect": cv2.BORDER_REFLECT_101, "symmetric": cv2.BORDER_REFLECT}


def padding_ltrb(padding: Any, key: str = "padding") -> Tuple[int, int, int, int]:
    """paddle.vision's ``padding``: int (all sides), [left/right, top/bottom] or [left, top, right, bottom]."""
    if isinstance(padding, (list, tuple)):
        values = [non_negative_int(p, key) for p in padding]
        if len(values) == 2:
            return values[0], values[1], values[0], values[1]
        if len(values) == 4:
            return tuple(values)
        raise ConfigError(key, f"expected an integer, 2 or 4 integers, got {padding!r}")
    side = non_negative_int(padding, key)
    return side, side, side, side


def pad_image(img: np.ndarray, ltrb: Tuple[int, int, int, int], mode: str = "constant",
              fill: Tuple[float, ...] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """Pad an HWC image by (left, top, right, bottom); ``fill`` is per channel (constant mode)."""
    left, top, right, bottom = ltrb
    if not any(ltrb):
        return img
    if mode == "constant":
        out = np.empty((img.shape[0] + top + bottom, img.shape[1] + left + right) + img.shape[2:], img.dtype)
        out[...] = np.asarray(fill[:img.shape[2]] if img.ndim == 3 else fill[0], dtype=np.float64).astype(img.dtype)
        out[top:top + img.shape[0], left:left + img.shape[1]] = img
        return out
    widths = [(top, bottom), (left, right)] + [(0, 0)] * (img.ndim - 2)
    return np.pad(img, widths, mode={"edge": "edge", "reflect": "reflect", "symmetric": "symmetric"}[mode])
