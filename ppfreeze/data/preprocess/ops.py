"""Per-image preprocess ops with PaddleClas's names and arguments (pure numpy + cv2).

Every op is a callable ``op(img) -> img``.  Images are ``uint8`` HWC arrays in RGB order
after :class:`DecodeImage` until :class:`NormalizeImage` turns them into float arrays.
Random ops draw from Python's ``random`` module only, so that seeding it (the data loader
does so per sample from ``(seed, epoch, index)``) makes augmentation reproducible.

Argument mistakes raise :class:`ConfigError` keyed by the argument name;
:func:`create_operators` prefixes the op's position in the config.
"""
from __future__ import annotations

import math
import random
from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ...config.errors import ConfigError
from ...config.expr import to_number
from ..registry import OPS
from .jpeg_integrity import decode_with_libjpeg_warnings, is_jpeg, jpeg_structure_problem

Size = Union[int, Sequence[int]]

_CV2_INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "bicubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
}
_PIL_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "lanczos", "hamming")


def _positive_int(value, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(key, f"expected a positive integer, got {value!r}")
    return value


def _size_wh(size: Size, key: str) -> Tuple[int, int]:
    """``size`` as cv2's ``(width, height)``: an int means a square, a pair is ``[w, h]``."""
    if isinstance(size, (list, tuple)):
        if len(size) != 2:
            raise ConfigError(key, f"expected an integer or a [width, height] pair, got {size!r}")
        return _positive_int(size[0], key), _positive_int(size[1], key)
    side = _positive_int(size, key)
    return side, side


def _check_backend(backend: str) -> str:
    if not isinstance(backend, str) or backend.lower() not in ("cv2", "pil"):
        raise ConfigError("backend", f"expected 'cv2' or 'pil', got {backend!r}")
    return backend.lower()


class _Resizer:
    """Resize an HWC uint8 array to ``(w, h)`` with cv2 or PIL, as PaddleClas's ``backend`` picks."""

    def __init__(self, interpolation: Union[None, str, int] = None, backend: str = "cv2"):
        self.backend = _check_backend(backend)
        if self.backend == "cv2":
            self.flag = self._cv2_flag(interpolation)
        else:
            self.flag = self._pil_flag(interpolation)

    @staticmethod
    def _cv2_flag(interpolation) -> int:
        if interpolation is None or interpolation == -1:  # -1: old PaddleClas spelling of "default"
            return cv2.INTER_LINEAR
        if isinstance(interpolation, str) and interpolation.lower() in _CV2_INTERPOLATIONS:
            return _CV2_INTERPOLATIONS[interpolation.lower()]
        if isinstance(interpolation, int) and not isinstance(interpolation, bool) \
                and interpolation in _CV2_INTERPOLATIONS.values():
            return interpolation
        raise ConfigError("interpolation", f"unknown interpolation {interpolation!r} for backend cv2",
                          f"use one of {', '.join(_CV2_INTERPOLATIONS)}")

    @staticmethod
    def _pil_flag(interpolation):
        from PIL import Image  # only the PIL backend needs Pillow
        name = "bilinear" if interpolation is None or interpolation == -1 else interpolation
        if not isinstance(name, str) or name.lower() not in _PIL_INTERPOLATIONS:
            raise ConfigError("interpolation", f"unknown interpolation {interpolation!r} for backend pil",
                              f"use one of {', '.join(_PIL_INTERPOLATIONS)}")
        return getattr(Image.Resampling, name.upper())

    def __call__(self, img: np.ndarray, size_wh: Tuple[int, int]) -> np.ndarray:
        if self.backend == "cv2":
            return cv2.resize(img, tuple(size_wh), interpolation=self.flag)
        from PIL import Image
        return np.asarray(Image.fromarray(img).resize(tuple(size_wh), self.flag))


@OPS.register
class DecodeImage:
    """Decode encoded image bytes (JPEG, PNG, ...) into a uint8 HWC array.

    Args:
        to_rgb: convert cv2's BGR to RGB (PaddleClas default).
        to_np: kept for PaddleClas configs; only numpy output is supported.
        channel_first: return CHW instead of HWC.
        backend: "cv2" or "pil" decoder.
        strict: refuse a truncated or corrupted JPEG instead of decoding what libjpeg can guess
            (it only warns). Checks the marker structure (end-of-image marker included) and,
            with the cv2 backend, libjpeg's damage warnings (``jpeg_integrity.py``); Pillow
            itself refuses truncated files. ``false``: PaddleClas's behaviour.
    """

    is_random = False  # deterministic: Freeze.cache_features may reuse what it produced

    def __init__(self, to_rgb: bool = True, to_np: bool = True, channel_first: bool = False,
                 backend: str = "cv2", strict: bool = True):
        if to_np is not True:
            raise ConfigError("to_np", "only numpy output is supported", "remove to_np or set it to true")
        if not isinstance(strict, bool):
            raise ConfigError("strict", f"expected true or false, got {strict!r}")
        self.to_rgb = bool(to_rgb)
        self.channel_first = bool(channel_first)
        self.backend = _check_backend(backend)
        self.strict = strict

    def __call__(self, data: bytes) -> np.ndarray:
        if not isinstance(data, (bytes, bytearray)):
            raise ValueError(f"DecodeImage expects the bytes of an image file, got {type(data).__name__}")
        if len(data) == 0:
            raise ValueError("the file is empty (0 bytes)")
        check_jpeg = self.strict and is_jpeg(data)
        if check_jpeg:
            problem = jpeg_structure_problem(bytes(data))
            if problem:
                raise ValueError(f"damaged JPEG: {problem}")
        img = self._decode_rgb(data) if self.backend == "pil" else self._decode_cv2(data, check_jpeg)
        if self.channel_first:
            img = img.transpose((2, 0, 1))
        return img

    def _decode_cv2(self, data: bytes, check_jpeg: bool = False) -> np.ndarray:
        def decode():
            return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if check_jpeg:
            img, warning = decode_with_libjpeg_warnings(decode)
            if warning and img is not None:
                raise ValueError(f"damaged JPEG: libjpeg reports '{warning}'")
        else:
            img = decode()
        if img is None:
            raise ValueError("the bytes are not a decodable image (corrupt or unsupported format)")
        return img[:, :, ::-1] if self.to_rgb else img

    def _decode_rgb(self, data: bytes) -> np.ndarray:
        import io
        from PIL import Image, UnidentifiedImageError
        try:
            img = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"the bytes are not a decodable image ({e})") from e
        return img if self.to_rgb else img[:, :, ::-1]


@OPS.register
class ResizeImage:
    """Resize to a fixed ``size`` ([w, h] or int) or so the short side equals ``resize_short``.

    ``return_numpy`` is accepted for PaddleClas's deploy configs; only numpy output (true) is supported.
    """

    is_random = False  # deterministic: Freeze.cache_features may reuse what it produced

    def __init__(self, size: Optional[Size] = None, resize_short: Optional[int] = None,
                 interpolation: Union[None, str, int] = None, backend: str = "cv2", return_numpy: bool = True):
        if return_numpy is not True:
            raise ConfigError("return_numpy", f"only numpy output is supported, got {return_numpy!r}",
                              "remove return_numpy or set it to true")
        if resize_short is not None and resize_short != 0:
            self.resize_short = _positive_int(resize_short, "resize_short")
            self.size_wh = None
        elif size is not None:
            self.resize_short = None
            self.size_wh = _size_wh(size, "size")
        else:
            raise ConfigError("size", "ResizeImage needs either 'size' or 'resize_short'",
                              "e.g. ResizeImage: {resize_short: 256}")
        self._resize = _Resizer(interpolation, backend)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return self._resize(img, self.target_size(img.shape[1], img.shape[0]))

    def target_size(self, img_w: int, img_h: int) -> Tuple[int, int]:
        """The output ``(w, h)`` for an input of ``img_w`` x ``img_h``."""
        if self.size_wh is not None:
            return self.size_wh
        ratio = self.resize_short / min(img_w, img_h)
        return int(round(img_w * ratio)), int(round(img_h * ratio))


@OPS.register
class CropImage:
    """Center crop to ``size`` (int, or [w, h])."""

    is_random = False  # deterministic: Freeze.cache_features may reuse what it produced

    def __init__(self, size: Size):
        self.size_wh = _size_wh(size, "size")

    def __call__(self, img: np.ndarray) -> np.ndarray:
        w, h = self.size_wh
        img_h, img_w = img.shape[:2]
        if w > img_w or h > img_h:
            raise ValueError(f"CropImage size {w}x{h} is larger than the image {img_w}x{img_h}; "
                             f"resize first (e.g. ResizeImage resize_short >= crop size)")
        top, left = (img_h - h) // 2, (img_w - w) // 2
        return img[top:top + h, left:left + w]


@OPS.register
class RandCropImage:
    """Random-area, random-aspect crop resized to ``size`` (Inception-style RandomResizedCrop).

    Args:
        size: output size, int or [w, h].
        scale: range of the crop's share of the image area.
        ratio: range of the crop's aspect ratio (w / h).
        interpolation: resize interpolation name (or cv2 flag).
        use_log_aspect: draw the aspect ratio uniformly in log space.
        backend: "cv2" or "pil" resize.
    """

    is_random = True  # a new draw every epoch: Freeze.cache_features must not reuse features

    def __init__(self, size: Size, scale: Optional[Sequence[float]] = None,
                 ratio: Optional[Sequence[float]] = None, interpolation: Union[None, str, int] = None,
                 use_log_aspect: bool = False, backend: str = "cv2"):
        self.size_wh = _size_wh(size, "size")
        self.scale = self._range(scale, (0.08, 1.0), "scale")
        self.ratio = self._range(ratio, (3.0 / 4.0, 4.0 / 3.0), "ratio")
        self.use_log_aspect = bool(use_log_aspect)
        self._resize = _Resizer(interpolation, backend)

    @staticmethod
    def _range(value, default: Tuple[float, float], key: str) -> Tuple[float, float]:
        if value is None:
            return default
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ConfigError(key, f"expected a [low, high] pair, got {value!r}")
        low, high = (float(to_number(v, key)) for v in value)
        if not 0 < low <= high:
            raise ConfigError(key, f"expected 0 < low <= high, got {value!r}")
        return low, high

    def __call__(self, img: np.ndarray) -> np.ndarray:
        img_h, img_w = img.shape[:2]
        left, top, w, h = self.sample_box(img_w, img_h)
        return self._resize(img[top:top + h, left:left + w], self.size_wh)

    def sample_box(self, img_w: int, img_h: int) -> Tuple[int, int, int, int]:
        """Draw ``(left, top, w, h)`` of a crop inside an ``img_w`` x ``img_h`` image."""
        if self.use_log_aspect:
            aspect = math.exp(random.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
        else:
            aspect = random.uniform(*self.ratio)
        # Largest area share whose box still fits inside the image at this aspect ratio.
        fit = min((img_w / img_h) / aspect, (img_h / img_w) * aspect)
        share = random.uniform(min(self.scale[0], fit), min(self.scale[1], fit))
        area = img_w * img_h * share
        w = min(img_w, max(1, int(math.sqrt(area * aspect))))
        h = min(img_h, max(1, int(math.sqrt(area / aspect))))
        left = random.randint(0, img_w - w)
        top = random.randint(0, img_h - h)
        return left, top, w, h


@OPS.register
class RandFlipImage:
    """Flip with probability 0.5: ``flip_code`` 1 horizontal, 0 vertical, -1 both (cv2 codes)."""

    is_random = True  # a new draw every epoch: Freeze.cache_features must not reuse features

    def __init__(self, flip_code: int = 1):
        if flip_code not in (-1, 0, 1) or isinstance(flip_code, bool):
            raise ConfigError("flip_code", f"expected 1 (horizontal), 0 (vertical) or -1 (both), got {flip_code!r}")
        self.flip_code = flip_code

    def __call__(self, img: np.ndarray) -> np.ndarray:
        if random.randint(0, 1) == 1:
            return cv2.flip(img, self.flip_code)
        return img


@OPS.register
class NormalizeImage:
    """``(img * scale - mean) / std`` as float32 (or float16).

    Args:
        scale: number or arithmetic string such as "1.0/255.0" (default 1/255).
        mean, std: per-channel lists (ImageNet defaults).
        order: layout of the *input*: "chw", or "hwc" / "" for channel-last images.
        output_fp16: return float16.
        channel_num: 3, or 4 to append a zero channel.
    """

    is_random = False  # deterministic: Freeze.cache_features may reuse what it produced

    def __init__(self, scale: Union[None, float, str] = None, mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None, order: str = "chw", output_fp16: bool = False,
                 channel_num: int = 3):
        if order not in ("chw", "hwc", ""):
            raise ConfigError("order", f"expected 'chw', 'hwc' or '', got {order!r}")
        if channel_num not in (3, 4):
            raise ConfigError("channel_num", f"expected 3 or 4, got {channel_num!r}")
        self.scale = np.float32(to_number(scale, "scale") if scale is not None else 1.0 / 255.0)
        self.channel_first = order == "chw"
        self.channel_num = channel_num
        self.dtype = np.float16 if output_fp16 else np.float32
        shape = (3, 1, 1) if self.channel_first else (1, 1, 3)
        self.mean = self._per_channel(mean, (0.485, 0.456, 0.406), "mean").reshape(shape)
        self.std = self._per_channel(std, (0.229, 0.224, 0.225), "std").reshape(shape)
        if np.any(self.std == 0):
            raise ConfigError("std", f"std must not contain 0, got {std!r}")

    @staticmethod
    def _per_channel(values, default, key: str) -> np.ndarray:
        values = default if values is None else values
        if not isinstance(values, (list, tuple)) or len(values) != 3:
            raise ConfigError(key, f"expected a list of 3 numbers, got {values!r}")
        return np.array([to_number(v, key) for v in values], dtype=np.float32)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        axis = 0 if self.channel_first else img.ndim - 1
        if img.ndim != 3 or img.shape[axis] != 3:
            layout = "CHW" if self.channel_first else "HWC"
            raise ValueError(f"NormalizeImage(order={'chw' if self.channel_first else 'hwc'!r}) expects a "
                             f"3-channel {layout} image, got shape {img.shape}; PaddleClas train/eval "
                             f"configs use order: '' on HWC images")
        out = (img.astype(np.float32) * self.scale - self.mean) / self.std
        if self.channel_num == 4:
            pad_shape = list(out.shape)
            pad_shape[axis] = 1
            out = np.concatenate([out, np.zeros(pad_shape, np.float32)], axis=axis)
        return out.astype(self.dtype)


@OPS.register
class ToCHWImage:
    """Transpose an HWC image to CHW."""

    is_random = False  # deterministic: Freeze.cache_features may reuse what it produced

    def __init__(self):
        pass  # explicit, so that the builder rejects any argument by name

    def __call__(self, img: np.ndarray) -> np.ndarray:
        if img.ndim != 3:
            raise ValueError(f"ToCHWImage expects an HWC image, got shape {img.shape}")
        return img.transpose((2, 0, 1))
