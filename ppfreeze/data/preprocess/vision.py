"""paddle.vision.transforms ops that PaddleClas configs name, re-implemented on numpy arrays.

PaddleClas re-exports ``ToTensor``, ``Normalize``, ``Resize``, ``CenterCrop``,
``RandomResizedCrop``, ``RandomHorizontalFlip`` and ``Pad`` (as ``Pad_paddle_vision``) from
``paddle.vision.transforms``; ``RandomCrop`` is paddle's too. They keep paddle's argument names
and meaning on HWC arrays (paddle's cv2 path): ``size`` pairs are ``[height, width]``, not
PaddleClas's ``[width, height]``, and the random draws are paddle's (Python's ``random`` and
numpy's global RNG). ``ToTensor`` returns a float32 CHW array instead of a paddle Tensor, so no
op here imports paddle.
"""
from __future__ import annotations

import math
import random
from typing import Any, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ...config.errors import ConfigError
from ..registry import OPS
from .common import (PAD_MODES, Size, color, cv2_interpolation, flag, number, one_of, pad_image, pair,
                     padding_ltrb, positive_int, probability, size_hw, spatial_axes)

_DATA_FORMATS = ("CHW", "HWC")


def _channels(values: Union[float, Sequence[float]], key: str) -> np.ndarray:
    if isinstance(values, (list, tuple)):
        if not values:
            raise ConfigError(key, "expected a number or a list of numbers, got []")
        return np.array([number(v, key) for v in values], dtype=np.float32)
    return np.array([number(values, key)] * 3, dtype=np.float32)


def crop_hw(img: np.ndarray, top: int, left: int, height: int, width: int, op: str) -> np.ndarray:
    """``img[top:top+height, left:left+width]``; a box outside the image is an error, not a smaller crop."""
    if top < 0 or left < 0 or top + height > img.shape[0] or left + width > img.shape[1]:
        raise ValueError(f"{op}: a {width}x{height} crop at ({left}, {top}) does not fit the "
                         f"{img.shape[1]}x{img.shape[0]} image; resize or pad first")
    return img[top:top + height, left:left + width]


def resize_hw(img: np.ndarray, size_hw: Tuple[int, int], interpolation: int) -> np.ndarray:
    """cv2 resize to ``(height, width)``, keeping a trailing single channel."""
    out = cv2.resize(img, (size_hw[1], size_hw[0]), interpolation=interpolation)
    return out[:, :, None] if img.ndim == 3 and out.ndim == 2 else out


@OPS.register
class ToTensor:
    """uint8 HWC -> float32 in [0, 1], CHW (``data_format: CHW``) or HWC; other dtypes keep their values."""

    is_random = False  # deterministic: Freeze.cache_features may reuse what it produced

    def __init__(self, data_format: str = "CHW"):
        self.data_format = one_of(data_format, "data_format", _DATA_FORMATS)

    def output_channel_first(self, channel_first: bool) -> bool:
        """``data_format`` decides the output layout."""
        return self.data_format == "CHW"

    def __call__(self, img: np.ndarray) -> np.ndarray:
        img = np.asarray(img)
        if img.ndim == 2:
            img = img[:, :, None]
        if img.ndim != 3:
            raise ValueError(f"ToTensor expects an HWC image, got shape {img.shape}")
        out = img.astype(np.float32) / np.float32(255.0) if img.dtype == np.uint8 else img
        return out.transpose((2, 0, 1)) if self.data_format == "CHW" else out


@OPS.register
class Normalize:
    """``(img - mean) / std`` per channel; ``data_format`` is the layout of the input.

    Args:
        mean, std: one number, or one per channel.
        data_format: "CHW" (after ToTensor) or "HWC".
        to_rgb: reverse the channel order first.
    """

    is_random = False  # deterministic: Freeze.cache_features may reuse what it produced

    def __init__(self, mean: Union[float, Sequence[float]] = 0.0, std: Union[float, Sequence[float]] = 1.0,
                 data_format: str = "CHW", to_rgb: bool = False):
        self.data_format = one_of(data_format, "data_format", _DATA_FORMATS)
        shape = (-1, 1, 1) if self.data_format == "CHW" else (1, 1, -1)
        self.mean = _channels(mean, "mean").reshape(shape)
        self.std = _channels(std, "std").reshape(shape)
        if np.any(self.std == 0):
            raise ConfigError("std", f"std must not contain 0, got {std!r}")
        self.to_rgb = flag(to_rgb, "to_rgb")

    def __call__(self, img: np.ndarray) -> np.ndarray:
        axis = 0 if self.data_format == "CHW" else 2
        if img.ndim != 3 or img.shape[axis] != self.mean.size:
            raise ValueError(f"Normalize(data_format={self.data_format!r}) expects {self.mean.size} channels on "
                             f"axis {axis}, got shape {img.shape}; ToTensor makes CHW, use data_format: HWC otherwise")
        if self.to_rgb:
            img = np.flip(img, axis=axis)
        return ((img - self.mean) / self.std).astype(np.float32, copy=False)


@OPS.register
class Resize:
    """Resize to ``size`` [height, width], or (an int) so the short side equals ``size``.

    The long side is ``int(size * long / short)`` (truncated, as paddle does).
    """

    is_random = False  # deterministic: Freeze.cache_features may reuse what it produced

    def __init__(self, size: Size, interpolation: str = "bilinear"):
        self.short = positive_int(size, "size") if not isinstance(size, (list, tuple)) else None
        self.size_hw = None if self.short is not None else size_hw(size, "size")
        self.flag = cv2_interpolation(interpolation)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        if self.size_hw is not None:
            return resize_hw(img, self.size_hw, self.flag)
        if min(h, w) == self.short:
            return img
        if w < h:
            return resize_hw(img, (int(self.short * h / w), self.short), self.flag)
        return resize_hw(img, (self.short, int(self.short * w / h)), self.flag)


@OPS.register
class CenterCrop:
    """Crop ``size`` [height, width] (or a square) at the centre; offsets round half to even."""

    is_random = False  # deterministic: Freeze.cache_features may reuse what it produced

    def __init__(self, size: Size):
        self.size_hw = size_hw(size, "size")

    def __call__(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        th, tw = self.size_hw
        return crop_hw(img, int(round((h - th) / 2.0)), int(round((w - tw) / 2.0)), th, tw, "CenterCrop")


@OPS.register
class RandomResizedCrop:
    """Crop a random area share (``scale``) and aspect ratio (``ratio``, drawn in log space), resize to ``size``.

    Ten tries; if none fits, a centre crop clamped to ``ratio``. ``size`` is [height, width].
    """

    is_random = True  # a new draw every epoch: Freeze.cache_features must not reuse features

    def __init__(self, size: Size, scale: Sequence[float] = (0.08, 1.0), ratio: Sequence[float] = (3.0 / 4, 4.0 / 3),
                 interpolation: str = "bilinear"):
        self.size_hw = size_hw(size, "size")
        self.scale = pair(scale, "scale")
        self.ratio = pair(ratio, "ratio")
        if self.ratio[0] <= 0:
            raise ConfigError("ratio", f"expected positive aspect ratios, got {ratio!r}")
        self.flag = cv2_interpolation(interpolation)

    def sample_box(self, width: int, height: int, attempts: int = 10) -> Tuple[int, int, int, int]:
        """Draw ``(top, left, h, w)`` inside a ``width`` x ``height`` image."""
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(attempts):
            target_area = np.random.uniform(*self.scale) * area
            aspect = math.exp(np.random.uniform(*log_ratio))
            w = int(round(math.sqrt(target_area * aspect)))
            h = int(round(math.sqrt(target_area / aspect)))
            if 0 < w <= width and 0 < h <= height:
                return random.randint(0, height - h), random.randint(0, width - w), h, w
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            w, h = int(round(height * self.ratio[1])), height
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, img: np.ndarray) -> np.ndarray:
        top, left, h, w = self.sample_box(img.shape[1], img.shape[0])
        return resize_hw(img[top:top + h, left:left + w], self.size_hw, self.flag)


@OPS.register
class RandomHorizontalFlip:
    """Flip left-right with probability ``prob`` (HWC, or CHW after ToTensor)."""

    def __init__(self, prob: float = 0.5):
        self.prob = probability(prob, "prob")
        self.is_random = self.prob > 0  # prob 0 never flips: deterministic
        self.channel_first = False  # set by create_operators from the ops before this one

    def __call__(self, img: np.ndarray) -> np.ndarray:
        if random.random() < self.prob:
            return np.flip(img, axis=spatial_axes(img, self.channel_first)[1])
        return img


def _pad_args(padding: Any, fill: Any, padding_mode: Any) -> Tuple[Tuple[int, int, int, int], Tuple[float, ...], str]:
    mode = one_of(padding_mode, "padding_mode", tuple(PAD_MODES))
    return padding_ltrb(padding), color(fill, "fill"), mode


class PadVision:
    """paddle.vision's Pad: ``padding`` int, [left/right, top/bottom] or [left, top, right, bottom]."""

    is_random = False  # deterministic: Freeze.cache_features may reuse what it produced

    def __init__(self, padding: Union[int, Sequence[int]], fill: Union[float, Sequence[float]] = 0,
                 padding_mode: str = "constant"):
        self.ltrb, self.fill, self.mode = _pad_args(padding, fill, padding_mode)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return pad_image(img, self.ltrb, self.mode, self.fill)


# PaddleClas imports paddle.vision's Pad under this name (its own ``Pad`` is another op).
OPS.register(PadVision, name="Pad_paddle_vision")


@OPS.register
class RandomCrop:
    """Crop ``size`` [height, width] at a random position, after optional padding.

    Args:
        size: crop size.
        padding: padding added first (as in Pad_paddle_vision).
        pad_if_needed: pad a too small image (width, then height) on both sides to fit.
        fill, padding_mode: as in Pad_paddle_vision.
    """

    is_random = True  # a new draw every epoch: Freeze.cache_features must not reuse features

    def __init__(self, size: Size, padding: Optional[Union[int, Sequence[int]]] = None, pad_if_needed: bool = False,
                 fill: Union[float, Sequence[float]] = 0, padding_mode: str = "constant"):
        self.size_hw = size_hw(size, "size")
        self.ltrb, self.fill, self.mode = _pad_args(0 if padding is None else padding, fill, padding_mode)
        self.pad_if_needed = flag(pad_if_needed, "pad_if_needed")

    def __call__(self, img: np.ndarray) -> np.ndarray:
        img = pad_image(img, self.ltrb, self.mode, self.fill)
        th, tw = self.size_hw
        if self.pad_if_needed and img.shape[1] < tw:
            extra = tw - img.shape[1]
            img = pad_image(img, (extra, 0, extra, 0), self.mode, self.fill)
        if self.pad_if_needed and img.shape[0] < th:
            extra = th - img.shape[0]
            img = pad_image(img, (0, extra, 0, extra), self.mode, self.fill)
        h, w = img.shape[:2]
        if (h, w) == (th, tw):
            return img
        if h < th or w < tw:
            raise ValueError(f"RandomCrop: the {w}x{h} image is smaller than the crop {tw}x{th}; "
                             f"set pad_if_needed: true or resize first")
        top = random.randint(0, h - th)
        left = random.randint(0, w - tw)
        return img[top:top + th, left:left + tw]
