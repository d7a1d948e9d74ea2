"""PaddleClas's crop, pad and rotation ops (numpy + cv2).

``size`` pairs are PaddleClas's ``[width, height]``. Random draws are PaddleClas's calls on
Python's ``random`` and numpy's global RNG, in the same order.
"""
from __future__ import annotations

import math
import random
from typing import Dict, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ...config.errors import ConfigError
from ..registry import OPS
from .common import (PAD_MODES, Size, color, cv2_interpolation, flag, non_negative_int, number, one_of, pad_image,
                     padding_ltrb, positive_int, probability, size_wh, spatial_axes)
from .vision import resize_hw


@OPS.register
class RandomCropImage:
    """Crop ``size`` [w, h] at a uniformly drawn position (no resize)."""

    is_random = True  # a new draw every epoch: Freeze.cache_features must not reuse features

    def __init__(self, size: Size):
        self.size_wh = size_wh(size, "size")

    def __call__(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        tw, th = self.size_wh
        if h < th or w < tw:
            raise ValueError(f"RandomCropImage: the {w}x{h} image is smaller than the crop {tw}x{th}; resize first")
        top = random.randint(0, h - th)
        left = random.randint(0, w - tw)
        return img[top:top + th, left:left + tw]


@OPS.register
class RandCropImageV2:
    """Crop ``size`` [w, h] at a uniformly drawn position (no resize), PaddleClas's variant.

    PaddleClas draws the offset from ``0 .. image - crop + 1`` inclusive, so a crop may reach
    one pixel past the right or bottom edge; that pixel is 0, as in PaddleClas's PIL path (its
    numpy path returns a crop one pixel short instead, which cannot be batched).
    """

    is_random = True  # a new draw every epoch: Freeze.cache_features must not reuse features

    def __init__(self, size: Size):
        self.size_wh = size_wh(size, "size")

    def __call__(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        tw, th = self.size_wh
        if h + 1 < th or w + 1 < tw:
            raise ValueError(f"RandCropImageV2: crop {tw}x{th} is larger than the {w}x{h} image")
        if (w, h) == (tw, th):
            return img
        top = random.randint(0, h - th + 1)
        left = random.randint(0, w - tw + 1)
        out = np.zeros((th, tw) + img.shape[2:], img.dtype)
        inside = img[top:top + th, left:left + tw]
        out[:inside.shape[0], :inside.shape[1]] = inside
        return out


@OPS.register
class CropImageAtRatio:
    """Centre square of side ``size / (size + pad)`` x the short side, resized to ``size`` (EfficientNetV2 eval)."""

    is_random = False  # deterministic: Freeze.cache_features may reuse what it produced

    def __init__(self, size: int, pad: int, interpolation: str = "bilinear"):
        self.size = positive_int(size, "size")
        self.ratio = self.size / (self.size + non_negative_int(pad, "pad"))
        self.flag = cv2_interpolation(interpolation)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        side = int(self.ratio * min(h, w))
        top, left = (h - side) // 2, (w - side) // 2
        return resize_hw(img[top:top + side, left:left + side], (self.size, self.size), self.flag)


@OPS.register
class Pad:
    """PaddleClas's Pad: ``padding`` pixels of ``fill`` on every side (cv2 and pil backends agree).

    Args:
        padding: pixels per side (or [left/right, top/bottom], [left, top, right, bottom]).
        fill: fill value, one for all channels or one per channel.
        padding_mode: constant (PaddleClas ignores this argument and always pads constant; the
            other paddle modes, edge / reflect / symmetric, are honoured here).
        backend: "pil" or "cv2"; both give the same pixels.
    """

    is_random = False  # deterministic: Freeze.cache_features may reuse what it produced

    def __init__(self, padding: int, fill: Union[int, Sequence[int]] = 0, padding_mode: str = "constant",
                 backend: str = "pil"):
        self.ltrb = padding_ltrb(padding)
        self.fill = color(fill, "fill")
        self.mode = one_of(padding_mode, "padding_mode", tuple(PAD_MODES))
        one_of(backend, "backend", ("pil", "cv2"))

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return pad_image(img, self.ltrb, self.mode, self.fill)


@OPS.register
class Padv2:
    """Place the image on a float32 canvas of ``size`` [w, h] (or the next multiple of ``size_divisor``).

    Args:
        size: canvas size; None pads to multiples of ``size_divisor``.
        size_divisor: used when ``size`` is None.
        pad_mode: where the image goes: 0 top-left, 1 centre, 2 bottom-right, -1 at ``offsets``.
        offsets: [x, y] for pad_mode -1.
        fill_value: canvas colour, one number or one per channel.
    """

    is_random = False  # deterministic: Freeze.cache_features may reuse what it produced

    def __init__(self, size: Optional[Size] = None, size_divisor: int = 32, pad_mode: int = 0,
                 offsets: Optional[Sequence[int]] = None, fill_value: Union[float, Sequence[float]] = (127.5,) * 3):
        self.size_wh = None if size is None else size_wh(size, "size")
        self.size_divisor = positive_int(size_divisor, "size_divisor")
        self.pad_mode = one_of(pad_mode, "pad_mode", (-1, 0, 1, 2))
        self.offsets = None
        if self.pad_mode == -1:
            if not isinstance(offsets, (list, tuple)) or len(offsets) != 2:
                raise ConfigError("offsets", f"pad_mode -1 needs offsets [x, y], got {offsets!r}")
            self.offsets = tuple(non_negative_int(v, "offsets") for v in offsets)
        self.fill = np.array(color(fill_value, "fill_value"), dtype=np.float32)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        im_h, im_w = img.shape[:2]
        if self.size_wh is not None:
            w, h = self.size_wh
            if im_h > h or im_w > w:
                raise ValueError(f"Padv2: the {im_w}x{im_h} image is larger than size {w}x{h}; resize first")
        else:
            h = int(math.ceil(im_h / self.size_divisor) * self.size_divisor)
            w = int(math.ceil(im_w / self.size_divisor) * self.size_divisor)
        if (h, w) == (im_h, im_w):
            return img.astype(np.float32)
        x, y = self._offsets(h - im_h, w - im_w)
        canvas = np.empty((h, w, img.shape[2]), np.float32)
        canvas[...] = self.fill[:img.shape[2]]
        canvas[y:y + im_h, x:x + im_w] = img
        return canvas

    def _offsets(self, spare_h: int, spare_w: int) -> Tuple[int, int]:
        if self.pad_mode == -1:
            return self.offsets
        if self.pad_mode == 0:
            return 0, 0
        if self.pad_mode == 1:
            return spare_w // 2, spare_h // 2
        return spare_w, spare_h


@OPS.register
class RandomRot90:
    """Rotate by a random multiple of 90 degrees; the multiple (0-3) is the sample's
    ``random_rot90_orientation`` label (PaddleClas's image-orientation task)."""

    is_random = True  # a new draw every epoch: Freeze.cache_features must not reuse features
    label_key = "random_rot90_orientation"

    def __init__(self):
        self.channel_first = False  # set by create_operators from the ops before this one

    def augment_with_labels(self, img: np.ndarray) -> Tuple[np.ndarray, Dict[str, int]]:
        """The rotated image and ``{"random_rot90_orientation": k}``."""
        k = random.choice([0, 1, 2, 3])
        if k:
            img = np.rot90(img, k, axes=spatial_axes(img, self.channel_first))
        return img, {self.label_key: k}

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return self.augment_with_labels(img)[0]


@OPS.register
class RandomRotation:
    """With probability ``prob``, rotate by an angle drawn from [-degrees, degrees] (or [low, high]).

    Args:
        prob: probability of rotating.
        degrees: a number d (range [-d, d]) or a [low, high] pair, counter-clockwise.
        interpolation: cv2 name (paddle's default 'nearest').
        expand: enlarge the output to hold the whole rotated image.
        center: [x, y] centre of rotation (default: the image centre).
        fill: colour of the area outside the rotated image.
    """

    def __init__(self, prob: float = 0.5, degrees: Union[float, Sequence[float]] = None,
                 interpolation: str = "nearest", expand: bool = False, center: Optional[Sequence[float]] = None,
                 fill: Union[float, Sequence[float]] = 0):
        self.prob = probability(prob, "prob")
        if degrees is None:
            raise ConfigError("degrees", "missing", "e.g. RandomRotation: {degrees: 90, prob: 0.5}")
        if isinstance(degrees, (list, tuple)):
            if len(degrees) != 2:
                raise ConfigError("degrees", f"expected a number or a [low, high] pair, got {degrees!r}")
            self.degrees = tuple(number(d, "degrees") for d in degrees)
        else:
            d = number(degrees, "degrees", low=0.0)
            self.degrees = (-d, d)
        self.flag = cv2_interpolation(interpolation)
        self.expand = flag(expand, "expand")
        if center is not None and (not isinstance(center, (list, tuple)) or len(center) != 2):
            raise ConfigError("center", f"expected [x, y], got {center!r}")
        self.center = None if center is None else tuple(number(c, "center") for c in center)
        self.fill = color(fill, "fill")
        self.is_random = self.prob > 0  # prob 0 never rotates: deterministic

    def __call__(self, img: np.ndarray) -> np.ndarray:
        if np.random.random() < self.prob:
            return self.rotate(img, random.uniform(*self.degrees))
        return img

    def rotate(self, img: np.ndarray, angle: float) -> np.ndarray:
        """Rotate ``img`` (HWC) by ``angle`` degrees counter-clockwise."""
        h, w = img.shape[:2]
        center = self.center or (w / 2.0, h / 2.0)
        matrix = cv2.getRotationMatrix2D(center, angle, 1)
        if self.expand:
            w, h = self._expanded_size(matrix, w, h)
        fill = self.fill[:img.shape[2]] if img.ndim == 3 else self.fill[0]
        out = cv2.warpAffine(img, matrix, (w, h), flags=self.flag, borderValue=fill)
        return out[:, :, None] if img.ndim == 3 and out.ndim == 2 else out

    @staticmethod
    def _expanded_size(matrix: np.ndarray, w: int, h: int) -> Tuple[int, int]:
        """Grow the canvas to the rotated corners' bounding box and recentre ``matrix`` (in place)."""
        corners = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], np.float64) @ matrix.T
        new_w = math.ceil(corners[:, 0].max()) - math.floor(corners[:, 0].min())
        new_h = math.ceil(corners[:, 1].max()) - math.floor(corners[:, 1].min())
        matrix[0, 2] += (new_w - w) * 0.5
        matrix[1, 2] += (new_h - h) * 0.5
        return int(new_w), int(new_h)
