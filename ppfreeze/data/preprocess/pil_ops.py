"""PIL image operations shared by the policy-based augmentations (AutoAugment, RandAugment*,
TimmAutoAugment, AugMix).

Each takes and returns a PIL image; magnitudes are already mapped to the operation's own
parameter (degrees, pixels, enhancement factor, ...). Pillow is imported on first use, so
importing the preprocess package stays cheap.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np


def _pil():
    from PIL import Image, ImageEnhance, ImageOps
    return Image, ImageEnhance, ImageOps


def affine(img, coeffs: Sequence[float], resample: Optional[int] = None, fill=None):
    """PIL's affine ``transform`` (``coeffs`` map output to input pixels); NEAREST by default."""
    Image, _, _ = _pil()
    resample = Image.Resampling.NEAREST if resample is None else resample
    return img.transform(img.size, Image.Transform.AFFINE, tuple(coeffs), resample, fillcolor=fill)


def shear_x(img, factor: float, resample: Optional[int] = None, fill=None):
    return affine(img, (1, factor, 0, 0, 1, 0), resample, fill)


def shear_y(img, factor: float, resample: Optional[int] = None, fill=None):
    return affine(img, (1, 0, 0, factor, 1, 0), resample, fill)


def translate_x(img, pixels: float, resample: Optional[int] = None, fill=None):
    return affine(img, (1, 0, pixels, 0, 1, 0), resample, fill)


def translate_y(img, pixels: float, resample: Optional[int] = None, fill=None):
    return affine(img, (1, 0, 0, 0, 1, pixels), resample, fill)


def rotate(img, degrees: float, resample: Optional[int] = None, fill=None):
    """Rotate counter-clockwise about the centre, same size; ``fill`` outside."""
    Image, _, _ = _pil()
    resample = Image.Resampling.NEAREST if resample is None else resample
    return img.rotate(degrees, resample, fillcolor=fill)


def rotate_gray_fill(img, degrees: float):
    """Rotate (nearest) and fill the uncovered corners with grey 128, via an alpha composite."""
    Image, _, _ = _pil()
    rotated = img.convert("RGBA").rotate(degrees)
    return Image.composite(rotated, Image.new("RGBA", rotated.size, (128,) * 4), rotated).convert(img.mode)


def enhance(kind: str, img, factor: float):
    """ImageEnhance ``kind`` ('Color', 'Contrast', 'Brightness', 'Sharpness'); 1.0 is the identity."""
    _, ImageEnhance, _ = _pil()
    return getattr(ImageEnhance, kind)(img).enhance(factor)


def posterize(img, bits: int):
    """Keep the ``bits`` high bits of every value; 0 bits is a black image (as older Pillow gave:
    Pillow 10+ refuses 0, which timm's "v0" policy and magnitude-10 PosterizeIncreasing ask for)."""
    _, _, ImageOps = _pil()
    if int(bits) <= 0:
        return img.point(lambda _: 0)
    return ImageOps.posterize(img, int(bits))


def solarize(img, threshold: float):
    _, _, ImageOps = _pil()
    return ImageOps.solarize(img, threshold)


def solarize_add(img, add: int, threshold: int = 128):
    """Add ``add`` (capped at 255) to the values below ``threshold``; other modes than L/RGB pass."""
    if img.mode not in ("L", "RGB"):
        return img
    lut = [min(255, v + add) if v < threshold else v for v in range(256)]
    return img.point(lut * (3 if img.mode == "RGB" else 1))


def autocontrast(img):
    _, _, ImageOps = _pil()
    return ImageOps.autocontrast(img)


def equalize(img):
    _, _, ImageOps = _pil()
    return ImageOps.equalize(img)


def invert(img):
    _, _, ImageOps = _pil()
    return ImageOps.invert(img)


def cutout_square(img, half_side: int, replace: int = 0):
    """Fill a square of half-side ``half_side`` around a centre drawn uniformly from the whole
    image (``np.random``: row, then column) with ``replace``; clipped at the borders."""
    Image, _, _ = _pil()
    arr = np.array(img)
    h, w = arr.shape[:2]
    cy = np.random.randint(0, h + 1)
    cx = np.random.randint(0, w + 1)
    top, bottom = max(0, cy - half_side), min(h, cy + half_side)
    left, right = max(0, cx - half_side), min(w, cx + half_side)
    arr[top:bottom, left:right] = replace
    return Image.fromarray(arr)


def resample_of(name: str, key: str = "interpolation") -> int:
    """timm's ``_pil_interp`` for affine transforms: 'bicubic', anything else bilinear.

    'lanczos' and 'hamming' (which timm also maps) are refused: PIL's affine transforms and
    rotations take only nearest, bilinear and bicubic, so they would fail on the first image.
    """
    from ...config.errors import ConfigError
    Image, _, _ = _pil()
    if not isinstance(name, str):
        raise ConfigError(key, f"expected a name such as 'bicubic', got {name!r}")
    if name in ("lanczos", "hamming"):
        raise ConfigError(key, f"{name!r} cannot resample PIL's affine transforms", "use bicubic or bilinear")
    return Image.Resampling.BICUBIC if name == "bicubic" else Image.Resampling.BILINEAR


def pil_constants() -> Tuple[int, int, int]:
    """(NEAREST, BILINEAR, BICUBIC) resampling flags."""
    Image, _, _ = _pil()
    r = Image.Resampling
    return r.NEAREST, r.BILINEAR, r.BICUBIC
