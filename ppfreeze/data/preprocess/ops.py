"""The core per-image preprocess ops with PaddleClas's names and arguments (numpy + cv2).

Every op is a callable ``op(img) -> img``.  Images are ``uint8`` HWC arrays in RGB order
after :class:`DecodeImage` until :class:`NormalizeImage` turns them into float arrays.
Random ops draw from Python's ``random`` and numpy's global RNG only (the same calls, in the
same order, as PaddleClas's ops), so that seeding them (the data loader does so per sample
from ``(seed, epoch, index)``) makes augmentation reproducible. The augmentation ops live in
the sibling modules (``geometry``, ``vision``, ``erasing``, ``color``, ``autoaugment``, ...).

Argument mistakes raise :class:`ConfigError` keyed by the argument name;
:func:`create_operators` prefixes the op's position in the config.
"""
from __future__ import annotations

import logging
import math
import random
from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ...config.errors import ConfigError
from ...config.expr import to_number
from ..registry import OPS
from .common import Resizer, Size, check_backend, flag, pair, positive_int, size_wh
from .jpeg_integrity import decode_with_libjpeg_warnings, is_jpeg, jpeg_structure_problem

logger = logging.getLogger("ppfreeze")


@OPS.register
class DecodeImage:
    """Decode encoded image bytes (JPEG, PNG, ...) into a uint8 HWC array.

    Args:
        to_rgb: convert cv2's BGR to RGB (PaddleClas default).
        to_np: PaddleClas returns a PIL image when false; ops here work on arrays, so this
            returns the image as that PIL image holds it: RGB with backend pil, the decoder's
            BGR with backend cv2 (``to_rgb`` and ``channel_first`` apply only with to_np, as in
            PaddleClas).
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
        self.to_np = flag(to_np, "to_np")
        self.to_rgb = flag(to_rgb, "to_rgb") and self.to_np
        self.channel_first = flag(channel_first, "channel_first") and self.to_np
        self.backend = check_backend(backend)
        self.strict = flag(strict, "strict")

    def output_channel_first(self, channel_first: bool) -> bool:
        """Layout of the output (the input is bytes)."""
        return self.channel_first

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
        if self.backend == "pil":
            img = self._decode_pil(data)
            img = img if self.to_rgb or not self.to_np else img[:, :, ::-1]
        else:
            img = self._decode_cv2(data, check_jpeg)
            img = img[:, :, ::-1] if self.to_rgb else img
        if self.channel_first:
            img = img.transpose((2, 0, 1))
        return img

    @staticmethod
    def _decode_cv2(data: bytes, check_jpeg: bool = False) -> np.ndarray:
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
        return img

    @staticmethod
    def _decode_pil(data: bytes) -> np.ndarray:
        import io
        from PIL import Image, UnidentifiedImageError
        try:
            return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"the bytes are not a decodable image ({e})") from e


@OPS.register
class ResizeImage:
    """Resize to a fixed ``size`` ([w, h] or int) or so the short side equals ``resize_short``.

    Args:
        size, resize_short: the target; ``resize_short`` wins when both are set.
        interpolation: a cv2 / PIL name, or 'random' (bilinear or bicubic per image).
        backend: "cv2" or "pil".
        return_numpy: PaddleClas returns a PIL image when false (pil backend); the pixels are
            the same, and ops here always pass arrays on.
    """

    def __init__(self, size: Optional[Size] = None, resize_short: Optional[int] = None,
                 interpolation: Union[None, str, int] = None, backend: str = "cv2", return_numpy: bool = True):
        if resize_short is not None and resize_short != 0:
            self.resize_short = positive_int(resize_short, "resize_short")
            self.size_wh = None
        elif size is not None:
            self.resize_short = None
            self.size_wh = size_wh(size, "size")
        else:
            raise ConfigError("size", "ResizeImage needs either 'size' or 'resize_short'",
                              "e.g. ResizeImage: {resize_short: 256}")
        flag(return_numpy, "return_numpy")
        self._resize = Resizer(interpolation, backend)
        # deterministic unless the interpolation is drawn per image
        self.is_random = self._resize.random

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
        self.size_wh = size_wh(size, "size")

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
        progress_size: sizes of PaddleClas's progressive-training stages (EfficientNetV2); only
            that trainer reads them, so they are checked and otherwise unused: this op crops to
            ``size``.
        scale: range of the crop's share of the image area.
        ratio: range of the crop's aspect ratio (w / h).
        interpolation: resize interpolation name (or cv2 flag), or 'random'.
        use_log_aspect: draw the aspect ratio uniformly in log space.
        backend: "cv2" or "pil" resize.
    """

    is_random = True  # a new draw every epoch: Freeze.cache_features must not reuse features

    def __init__(self, size: Size, progress_size: Optional[Sequence[int]] = None,
                 scale: Optional[Sequence[float]] = None, ratio: Optional[Sequence[float]] = None,
                 interpolation: Union[None, str, int] = None, use_log_aspect: bool = False, backend: str = "cv2"):
        self.size_wh = size_wh(size, "size")
        if progress_size is not None:
            if not isinstance(progress_size, (list, tuple)) or not progress_size:
                raise ConfigError("progress_size", f"expected a list of sizes, got {progress_size!r}")
            for value in progress_size:
                positive_int(value, "progress_size")
            logger.info("RandCropImage: progress_size is read by PaddleClas's progressive trainer only; "
                        "ppfreeze crops to size %s", list(self.size_wh))
        self.scale = self._range(scale, (0.08, 1.0), "scale")
        self.ratio = self._range(ratio, (3.0 / 4.0, 4.0 / 3.0), "ratio")
        self.use_log_aspect = flag(use_log_aspect, "use_log_aspect")
        self._resize = Resizer(interpolation, backend)

    @staticmethod
    def _range(value, default: Tuple[float, float], key: str) -> Tuple[float, float]:
        low, high = pair(value, key, default)
        if not 0 < low:
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

    def output_channel_first(self, channel_first: bool) -> bool:
        """The output is CHW."""
        return True

    def __call__(self, img: np.ndarray) -> np.ndarray:
        if img.ndim != 3:
            raise ValueError(f"ToCHWImage expects an HWC image, got shape {img.shape}")
        return img.transpose((2, 0, 1))
