"""Photometric augmentations: ColorJitter (and paddle.vision's as RawColorJitter), RandomGrayscale,
PCALighting, BlurImage, AugMix (numpy / cv2 / PIL).

Random draws are PaddleClas's calls on Python's ``random`` and numpy's global RNG, in the same
order, so a seeded run reproduces PaddleClas's pixels.
"""
from __future__ import annotations

import random
from typing import Any, Callable, Dict, List, Optional, Tuple

import cv2
import numpy as np

from ...config.errors import ConfigError
from ..registry import OPS
from . import pil_ops
from .common import from_pil, number, positive_int, probability, to_pil


def _jitter_range(value: Any, key: str, center: float = 1.0, bound: Tuple[float, float] = (0, float("inf")),
                  clip_at_zero: bool = True) -> Optional[Tuple[float, float]]:
    """paddle.vision's factor range: d -> [center - d, center + d] (clipped at 0), or a [low, high] pair.

    ``None`` when the range is the single point ``center`` (that transform draws nothing).
    """
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ConfigError(key, f"expected a number or a [low, high] pair, got {value!r}")
        low, high = (number(v, key) for v in value)
        if not bound[0] <= low <= high <= bound[1]:
            raise ConfigError(key, f"expected {bound[0]} <= low <= high <= {bound[1]}, got {value!r}")
    else:
        d = number(value, key, low=0.0)
        low, high = center - d, center + d
        if clip_at_zero:
            low = max(low, 0.0)
        if not bound[0] <= low <= high <= bound[1]:
            raise ConfigError(key, f"expected a value giving a range within {bound}, got {value!r}")
    return None if low == high == center else (low, high)


def _adjust_hue(img, factor: float):
    """Shift the HSV hue channel by ``factor`` of a turn (paddle.vision's PIL path)."""
    from PIL import Image
    h, s, v = img.convert("HSV").split()
    shifted = ((np.array(h, dtype=np.uint8).astype(np.int16) + int(factor * 255)) % 256).astype(np.uint8)
    return Image.merge("HSV", (Image.fromarray(shifted, "L"), s, v)).convert(img.mode)


@OPS.register
class ColorJitter:
    """With probability ``prob``, jitter brightness, contrast, saturation and hue in a random order.

    Args:
        prob: probability of jittering (PaddleClas's default 2 means always).
        brightness, contrast, saturation: d draws a factor from [max(0, 1 - d), 1 + d]; or [low, high].
        hue: d in [0, 0.5] draws a hue shift from [-d, d]; or [low, high] within [-0.5, 0.5].
    """

    def __init__(self, prob: float = 2, brightness: Any = 0, contrast: Any = 0, saturation: Any = 0, hue: Any = 0):
        self.prob = number(prob, "prob")
        # every transform takes part in the shuffle, even one that draws nothing (as paddle does)
        self.ranges = [("brightness", _jitter_range(brightness, "brightness")),
                       ("contrast", _jitter_range(contrast, "contrast")),
                       ("saturation", _jitter_range(saturation, "saturation")),
                       ("hue", _jitter_range(hue, "hue", center=0.0, bound=(-0.5, 0.5), clip_at_zero=False))]
        self.slots = [name for name, value in zip(("brightness", "contrast", "saturation", "hue"),
                                                  (brightness, contrast, saturation, hue)) if value is not None]
        self.is_random = self.prob > 0 and any(r is not None for _, r in self.ranges)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        if np.random.random() >= self.prob:
            return img
        pil = to_pil(img, "ColorJitter")
        ranges = dict(self.ranges)
        order = list(self.slots)
        random.shuffle(order)
        for name in order:
            if ranges[name] is None:
                continue
            factor = random.uniform(*ranges[name])
            if name == "hue":
                pil = _adjust_hue(pil, factor)
            else:
                pil = pil_ops.enhance({"brightness": "Brightness", "contrast": "Contrast",
                                       "saturation": "Color"}[name], pil, factor)
        return from_pil(pil)


@OPS.register
def RawColorJitter(brightness: Any = 0, contrast: Any = 0, saturation: Any = 0, hue: Any = 0) -> ColorJitter:
    """paddle.vision's ``ColorJitter`` as PaddleClas's configs name it inside ``RandomApply``: always
    applied (a :class:`ColorJitter` with ``prob`` 2)."""
    return ColorJitter(2, brightness, contrast, saturation, hue)


@OPS.register
class RandomGrayscale:
    """With probability ``p`` (Python's ``random``), the image in gray, kept 3-channel (PIL's ``L``
    conversion, as paddle.vision's): PaddleClas's CCSSL augmentation."""

    is_random = True

    def __init__(self, p: float = 0.1):
        self.p = probability(p, "p")

    def __call__(self, img: np.ndarray) -> np.ndarray:
        if random.random() >= self.p:
            return img
        gray = np.array(to_pil(img, "RandomGrayscale").convert("L"))
        return np.dstack([gray] * 3) if img.ndim == 3 else gray


@OPS.register
class PCALighting:
    """AlexNet-style PCA lighting noise: add ``eigvec @ (alpha * eigval)`` to every pixel,
    alpha ~ N(0, 0.1) per image (ImageNet eigen-decomposition; no arguments).

    PaddleClas applies it to 0-255 pixels (before NormalizeImage), where the added values
    (about +-0.1) are small; the result is float32.
    """

    is_random = True  # a new draw every epoch: Freeze.cache_features must not reuse features
    alphastd = 0.1
    eigval = np.array([0.2175, 0.0188, 0.0045], np.float32)
    eigvec = np.array([[-0.5675, 0.7192, 0.4009],
                       [-0.5808, -0.0045, -0.8140],
                       [-0.5836, -0.6948, 0.4203]], np.float32)

    def __init__(self):
        self.channel_first = False  # set by create_operators from the ops before this one

    def __call__(self, img: np.ndarray) -> np.ndarray:
        alpha = np.random.normal(0, self.alphastd, size=3).astype(np.float32)
        rgb = (self.eigvec * alpha[None, :] * self.eigval[None, :]).sum(1)
        return img + rgb.reshape((3, 1, 1) if self.channel_first else (1, 1, 3))


@OPS.register
class BlurImage:
    """With probability ``ratio``, blur with a Gaussian or a motion kernel (chosen evenly); the
    sample's ``blur_image`` label is 1 if blurred, else 0 (PaddleClas's clarity task).

    Args:
        ratio: probability of blurring.
        motion_max_ksize: motion kernel sizes are odd numbers in [5, this).
        motion_max_angle: motion angles are whole degrees in [-this, this).
        gaussian_max_ksize: Gaussian kernel sides are odd numbers in [5, this).
    """

    is_random = True  # a new draw every epoch: Freeze.cache_features must not reuse features
    label_key = "blur_image"

    def __init__(self, ratio: float = 0.5, motion_max_ksize: int = 12, motion_max_angle: int = 45,
                 gaussian_max_ksize: int = 12):
        self.ratio = probability(ratio, "ratio")
        for key, value in (("motion_max_ksize", motion_max_ksize), ("gaussian_max_ksize", gaussian_max_ksize)):
            if positive_int(value, key) <= 5:
                raise ConfigError(key, f"expected a kernel size above 5, got {value!r}")
        self.motion_max_ksize = motion_max_ksize
        self.motion_max_angle = positive_int(motion_max_angle, "motion_max_angle")
        self.gaussian_max_ksize = gaussian_max_ksize

    def augment_with_labels(self, img: np.ndarray) -> Tuple[np.ndarray, Dict[str, int]]:
        """The (maybe) blurred image and ``{"blur_image": 0 or 1}``."""
        if random.random() > self.ratio:
            return img, {self.label_key: 0}
        if random.choice(["gaussian", "motion"]) == "gaussian":
            return self._gaussian(img), {self.label_key: 1}
        return self._motion(img), {self.label_key: 1}

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return self.augment_with_labels(img)[0]

    def _gaussian(self, img: np.ndarray) -> np.ndarray:
        sizes = np.arange(5, self.gaussian_max_ksize, 2)
        ksize = (int(np.random.choice(sizes)), int(np.random.choice(sizes)))
        return cv2.GaussianBlur(img, ksize, 0)

    def _motion(self, img: np.ndarray) -> np.ndarray:
        degree = int(np.random.choice(np.arange(5, self.motion_max_ksize, 2)))
        angle = int(np.random.choice(np.arange(-self.motion_max_angle, self.motion_max_angle)))
        rotation = cv2.getRotationMatrix2D((degree / 2, degree / 2), angle, 1)
        kernel = cv2.warpAffine(np.diag(np.ones(degree)), rotation, (degree, degree)) / degree
        blurred = cv2.filter2D(img, -1, kernel)
        cv2.normalize(blurred, blurred, 0, 255, cv2.NORM_MINMAX)
        return np.array(blurred, dtype=np.uint8)


# ----------------------------------------------------------------------------- AugMix
def _severity_level(severity: float) -> float:
    return np.random.uniform(low=0.1, high=severity)


def _int_level(severity: float, maxval: float) -> int:
    return int(_severity_level(severity) * maxval / 10)


def _float_level(severity: float, maxval: float) -> float:
    return float(_severity_level(severity)) * maxval / 10.0


def _signed(value: float, draw: Callable[[], float] = np.random.uniform) -> float:
    return -value if draw() > 0.5 else value


def _augmix_operations() -> List[Callable]:
    """AugMix's operations ``op(pil, severity)`` (Hendrycks et al. 2020; no ImageNet-C overlap)."""
    _, bilinear, _ = pil_ops.pil_constants()
    return [
        lambda img, s: pil_ops.autocontrast(img),
        lambda img, s: pil_ops.equalize(img),
        lambda img, s: pil_ops.posterize(img, 4 - _int_level(s, 4)),
        lambda img, s: pil_ops.rotate(img, _signed(_int_level(s, 30)), bilinear),
        lambda img, s: pil_ops.solarize(img, 256 - _int_level(s, 256)),
        lambda img, s: pil_ops.shear_x(img, _signed(_float_level(s, 0.3)), bilinear),
        lambda img, s: pil_ops.shear_y(img, _signed(_float_level(s, 0.3)), bilinear),
        lambda img, s: pil_ops.translate_x(img, _signed(_int_level(s, img.size[0] / 3), np.random.random), bilinear),
        lambda img, s: pil_ops.translate_y(img, _signed(_int_level(s, img.size[1] / 3), np.random.random), bilinear),
    ]


@OPS.register
class AugMix:
    """PaddleClas's AugMix: with probability ``prob``, mix ``mixture_width`` chains of random
    operations with Dirichlet weights, then blend with the image by a Beta draw.

    Args:
        prob: probability of applying AugMix.
        aug_prob_coeff: the Dirichlet and Beta concentration.
        mixture_width: number of chains.
        mixture_depth: operations per chain; -1 draws 1-3 per chain.
        aug_severity: operation strength (1-10).
    """

    def __init__(self, prob: float = 0.5, aug_prob_coeff: float = 0.1, mixture_width: int = 3,
                 mixture_depth: int = 1, aug_severity: float = 1):
        self.prob = probability(prob, "prob")
        self.aug_prob_coeff = number(aug_prob_coeff, "aug_prob_coeff")
        if self.aug_prob_coeff <= 0:
            raise ConfigError("aug_prob_coeff", f"expected a positive concentration, got {aug_prob_coeff!r}")
        self.mixture_width = positive_int(mixture_width, "mixture_width")
        if isinstance(mixture_depth, bool) or not isinstance(mixture_depth, int) or mixture_depth == 0 \
                or mixture_depth < -1:
            raise ConfigError("mixture_depth", f"expected a positive integer or -1, got {mixture_depth!r}")
        self.mixture_depth = mixture_depth
        self.aug_severity = number(aug_severity, "aug_severity")
        if self.aug_severity <= 0.1:
            raise ConfigError("aug_severity", f"expected a severity above 0.1 (1-10), got {aug_severity!r}")
        self.operations = _augmix_operations()
        self.is_random = self.prob > 0  # prob 0 never mixes: deterministic

    def __call__(self, img: np.ndarray) -> np.ndarray:
        if random.random() > self.prob:
            return np.asarray(img).copy()
        to_pil(img, "AugMix")  # checks the input is a uint8 image
        weights = np.float32(np.random.dirichlet([self.aug_prob_coeff] * self.mixture_width))
        m = np.float32(np.random.beta(self.aug_prob_coeff, self.aug_prob_coeff))
        mix = np.zeros(img.shape)
        for weight in weights:
            chain = to_pil(img.copy(), "AugMix")
            depth = self.mixture_depth if self.mixture_depth > 0 else np.random.randint(1, 4)
            for _ in range(depth):
                chain = self.operations[np.random.choice(len(self.operations))](chain, self.aug_severity)
            mix += weight * np.asarray(chain)
        return ((1 - m) * img + m * mix).astype(np.uint8)
