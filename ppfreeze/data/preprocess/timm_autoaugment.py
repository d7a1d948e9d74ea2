"""``TimmAutoAugment``: timm's RandAugment, AugMix and AutoAugment as PaddleClas configures them.

``config_str`` picks the scheme and its settings, sections separated by '-':

- ``rand-m9-n2-mstd0.5-inc1-w0``: RandAugment; m magnitude (default 10), n operations per image
  (2), mstd std of a Gaussian jitter of the magnitude, inc 1 for the "increasing" operation set
  (severity grows with the magnitude), w0 timm's weighted choice of operations (without
  replacement).
- ``augmix-m3-w3-d-1-a1-b0-mstd0``: AugMix; m severity (3), w chain count (3), d chain depth
  (-1: 1-3 drawn per chain), a Dirichlet/Beta alpha (1), b 1 for the blended variant.
- ``v0``, ``v0r``, ``original``, ``originalr`` (optionally ``-mstd<x>``): AutoAugment policies.
  (PaddleClas only forwards strings starting with "auto", which no policy name does, so its
  AutoAugment branch cannot run; these are timm's names.)

Magnitudes run 0-10 (larger m values are clipped to 10 per operation). Geometric operations fill
with ``mean`` (as 0-255 values) and resample with ``interpolation`` ('random': bilinear or bicubic
per operation). Random draws are PaddleClas's (timm's) calls on ``random`` and numpy's global
RNG, in the same order.
"""
from __future__ import annotations

import random
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...config.errors import ConfigError
from ..registry import OPS
from . import pil_ops
from .common import from_pil, number, positive_int, probability, to_pil

MAX_LEVEL = 10.0
IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)


# ----------------------------------------------------------------------------- level -> argument
def _negate_half(value: float) -> float:
    """-value with probability 0.5 (one ``random.random()`` draw)."""
    return -value if random.random() > 0.5 else value


def _level_args(name: str, level: float, hparams: Dict[str, Any]) -> Tuple:
    """The operation's arguments at ``level`` (0-10)."""
    share = level / MAX_LEVEL
    if name in ("AutoContrast", "Equalize", "Invert"):
        return ()
    if name == "Rotate":
        return (_negate_half(share * 30.0),)
    if name == "Posterize":
        return (int(share * 4),)
    if name == "PosterizeIncreasing":
        return (4 - int(share * 4),)
    if name == "PosterizeOriginal":
        return (int(share * 4) + 4,)
    if name == "Solarize":
        return (int(share * 256),)
    if name == "SolarizeIncreasing":
        return (256 - int(share * 256),)
    if name == "SolarizeAdd":
        return (int(share * 110),)
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return (share * 1.8 + 0.1,)
    if name.endswith("Increasing"):  # Color/Contrast/Brightness/SharpnessIncreasing
        return (1.0 + _negate_half(share * 0.9),)
    if name in ("ShearX", "ShearY"):
        return (_negate_half(share * 0.3),)
    if name in ("TranslateX", "TranslateY"):
        return (_negate_half(share * float(hparams["translate_const"])),)
    if name in ("TranslateXRel", "TranslateYRel"):
        return (_negate_half(share * hparams.get("translate_pct", 0.45)),)
    raise KeyError(name)


KNOWN_OPERATIONS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "PosterizeIncreasing",
                    "PosterizeOriginal", "Solarize", "SolarizeIncreasing", "SolarizeAdd", "Color", "ColorIncreasing",
                    "Contrast", "ContrastIncreasing", "Brightness", "BrightnessIncreasing", "Sharpness",
                    "SharpnessIncreasing", "ShearX", "ShearY", "TranslateX", "TranslateY", "TranslateXRel",
                    "TranslateYRel")
_GEOMETRIC = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY", "TranslateXRel", "TranslateYRel")


def _apply(name: str, img, args: Tuple, fill: Tuple[int, ...], resample: int):
    """Run operation ``name`` on a PIL image."""
    base = name.replace("Increasing", "").replace("Original", "")
    if name == "Rotate":
        return pil_ops.rotate(img, args[0], resample, fill)
    if name in ("ShearX", "ShearY"):
        return (pil_ops.shear_x if name == "ShearX" else pil_ops.shear_y)(img, args[0], resample, fill)
    if name in ("TranslateX", "TranslateY"):
        return (pil_ops.translate_x if name == "TranslateX" else pil_ops.translate_y)(img, args[0], resample, fill)
    if name == "TranslateXRel":
        return pil_ops.translate_x(img, args[0] * img.size[0], resample, fill)
    if name == "TranslateYRel":
        return pil_ops.translate_y(img, args[0] * img.size[1], resample, fill)
    if base == "Posterize":
        return img if args[0] >= 8 else pil_ops.posterize(img, args[0])
    if base == "Solarize":
        return pil_ops.solarize(img, args[0])
    if name == "SolarizeAdd":
        return pil_ops.solarize_add(img, args[0])
    if base in ("Color", "Contrast", "Brightness", "Sharpness"):
        return pil_ops.enhance(base, img, args[0])
    return {"AutoContrast": pil_ops.autocontrast, "Equalize": pil_ops.equalize, "Invert": pil_ops.invert}[name](img)


class AugmentOp:
    """One operation at a fixed magnitude, applied with probability ``prob``."""

    def __init__(self, name: str, prob: float, magnitude: float, hparams: Dict[str, Any]):
        if name not in KNOWN_OPERATIONS:
            raise KeyError(name)
        self.name = name
        self.prob = prob
        self.magnitude = magnitude
        self.hparams = hparams
        self.fill = hparams["img_mean"]
        self.resample = hparams.get("interpolation")  # None: bilinear or bicubic, drawn per call
        self.magnitude_std = hparams.get("magnitude_std", 0)

    def __call__(self, img):
        if self.prob < 1.0 and random.random() > self.prob:
            return img
        magnitude = self.magnitude
        if self.magnitude_std and self.magnitude_std > 0:
            magnitude = random.gauss(magnitude, self.magnitude_std)
        magnitude = min(MAX_LEVEL, max(0, magnitude))
        args = _level_args(self.name, magnitude, self.hparams)
        resample = self.resample
        if self.name in _GEOMETRIC and resample is None:  # drawn after the level's sign, as timm does
            _, bilinear, bicubic = pil_ops.pil_constants()
            resample = random.choice((bilinear, bicubic))
        return _apply(self.name, img, args, self.fill, resample)


# ----------------------------------------------------------------------------- RandAugment
RAND_TRANSFORMS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
                   "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
RAND_INCREASING_TRANSFORMS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
                              "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing",
                              "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel",
                              "TranslateYRel")
# timm's weights for 'w0', listed in RAND_TRANSFORMS order (also used positionally with 'inc1').
RAND_CHOICE_WEIGHTS_0 = (0.025, 0.005, 0, 0.3, 0, 0.005, 0.005, 0.025, 0.005, 0.005, 0.025, 0.2, 0.2, 0.1, 0.1)


class _RandAugment:
    def __init__(self, ops: List[AugmentOp], num_layers: int, weights: Optional[np.ndarray]):
        self.ops = ops
        self.num_layers = num_layers
        self.weights = weights

    def __call__(self, img):
        # weighted choice draws without replacement, as timm does
        chosen = np.random.choice(len(self.ops), self.num_layers, replace=self.weights is None, p=self.weights)
        for i in chosen:
            img = self.ops[i](img)
        return img


# ----------------------------------------------------------------------------- AugMix
AUGMIX_TRANSFORMS = ("AutoContrast", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
                     "SharpnessIncreasing", "Equalize", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
                     "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")


class _AugMix:
    """``width`` chains of ``depth`` random operations, mixed with Dirichlet weights, blended
    with the original by a Beta draw (Hendrycks et al. 2020)."""

    def __init__(self, ops: List[AugmentOp], alpha: float, width: int, depth: int, blended: bool):
        self.ops = ops
        self.alpha = alpha
        self.width = width
        self.depth = depth
        self.blended = blended

    def _chain(self, img):
        depth = self.depth if self.depth > 0 else np.random.randint(1, 4)
        for i in np.random.choice(len(self.ops), depth, replace=True):
            img = self.ops[i](img)
        return img

    def __call__(self, img):
        from PIL import Image
        weights = np.float32(np.random.dirichlet([self.alpha] * self.width))
        m = np.float32(np.random.beta(self.alpha, self.alpha))
        if self.blended:
            return self._blended(img, weights, m)
        mixed = np.zeros((img.size[1], img.size[0], len(img.getbands())), dtype=np.float32)
        for w in weights:
            mixed += w * np.asarray(self._chain(img), dtype=np.float32)
        np.clip(mixed, 0, 255.0, out=mixed)
        return Image.blend(img, Image.fromarray(mixed.astype(np.uint8)), m)

    def _blended(self, img, weights: np.ndarray, m: float):
        """timm's faster variant: one PIL blend per chain with recomputed coefficients."""
        from PIL import Image
        original = img.copy()
        scaled, remaining, coefficients = weights * m, 1.0, []
        for w in scaled[::-1]:
            alpha = w / remaining
            remaining *= 1 - alpha
            coefficients.append(alpha)
        for alpha in np.array(coefficients[::-1], dtype=np.float32):
            img = Image.blend(img, self._chain(original), alpha)
        return img


# ----------------------------------------------------------------------------- AutoAugment
POLICY_V0 = [
    [("Equalize", 0.8, 1), ("ShearY", 0.8, 4)], [("Color", 0.4, 9), ("Equalize", 0.6, 3)],
    [("Color", 0.4, 1), ("Rotate", 0.6, 8)], [("Solarize", 0.8, 3), ("Equalize", 0.4, 7)],
    [("Solarize", 0.4, 2), ("Solarize", 0.6, 2)], [("Color", 0.2, 0), ("Equalize", 0.8, 8)],
    [("Equalize", 0.4, 8), ("SolarizeAdd", 0.8, 3)], [("ShearX", 0.2, 9), ("Rotate", 0.6, 8)],
    [("Color", 0.6, 1), ("Equalize", 1.0, 2)], [("Invert", 0.4, 9), ("Rotate", 0.6, 0)],
    [("Equalize", 1.0, 9), ("ShearY", 0.6, 3)], [("Color", 0.4, 7), ("Equalize", 0.6, 0)],
    [("Posterize", 0.4, 6), ("AutoContrast", 0.4, 7)], [("Solarize", 0.6, 8), ("Color", 0.6, 9)],
    [("Solarize", 0.2, 4), ("Rotate", 0.8, 9)], [("Rotate", 1.0, 7), ("TranslateYRel", 0.8, 9)],
    [("ShearX", 0.0, 0), ("Solarize", 0.8, 4)], [("ShearY", 0.8, 0), ("Color", 0.6, 4)],
    [("Color", 1.0, 0), ("Rotate", 0.6, 2)], [("Equalize", 0.8, 4), ("Equalize", 0.0, 8)],
    [("Equalize", 1.0, 4), ("AutoContrast", 0.6, 2)], [("ShearY", 0.4, 7), ("SolarizeAdd", 0.6, 7)],
    [("Posterize", 0.8, 2), ("Solarize", 0.6, 10)], [("Solarize", 0.6, 8), ("Equalize", 0.6, 1)],
    [("Color", 0.8, 6), ("Rotate", 0.4, 5)],
]
POLICY_ORIGINAL = [
    [("PosterizeOriginal", 0.4, 8), ("Rotate", 0.6, 9)], [("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)],
    [("Equalize", 0.8, 8), ("Equalize", 0.6, 3)], [("PosterizeOriginal", 0.6, 7), ("PosterizeOriginal", 0.6, 6)],
    [("Equalize", 0.4, 7), ("Solarize", 0.2, 4)], [("Equalize", 0.4, 4), ("Rotate", 0.8, 8)],
    [("Solarize", 0.6, 3), ("Equalize", 0.6, 7)], [("PosterizeOriginal", 0.8, 5), ("Equalize", 1.0, 2)],
    [("Rotate", 0.2, 3), ("Solarize", 0.6, 8)], [("Equalize", 0.6, 8), ("PosterizeOriginal", 0.4, 6)],
    [("Rotate", 0.8, 8), ("Color", 0.4, 0)], [("Rotate", 0.4, 9), ("Equalize", 0.6, 2)],
    [("Equalize", 0.0, 7), ("Equalize", 0.8, 8)], [("Invert", 0.6, 4), ("Equalize", 1.0, 8)],
    [("Color", 0.6, 4), ("Contrast", 1.0, 8)], [("Rotate", 0.8, 8), ("Color", 1.0, 2)],
    [("Color", 0.8, 8), ("Solarize", 0.8, 7)], [("Sharpness", 0.4, 7), ("Invert", 0.6, 8)],
    [("ShearX", 0.6, 5), ("Equalize", 1.0, 9)], [("Color", 0.4, 0), ("Equalize", 0.6, 3)],
    [("Equalize", 0.4, 7), ("Solarize", 0.2, 4)], [("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)],
    [("Invert", 0.6, 4), ("Equalize", 1.0, 8)], [("Color", 0.6, 4), ("Contrast", 1.0, 8)],
    [("Equalize", 0.8, 8), ("Equalize", 0.6, 3)],
]


def _with_increasing_posterize(policy, old: str):
    """The 'r' variants: the posterize of ``old`` replaced by PosterizeIncreasing."""
    return [[("PosterizeIncreasing" if n == old else n, p, m) for n, p, m in sub] for sub in policy]


AUTO_POLICIES = {"v0": POLICY_V0, "v0r": _with_increasing_posterize(POLICY_V0, "Posterize"),
                 "original": POLICY_ORIGINAL,
                 "originalr": _with_increasing_posterize(POLICY_ORIGINAL, "PosterizeOriginal")}


class _AutoAugment:
    def __init__(self, policy: List[List[AugmentOp]]):
        self.policy = policy

    def __call__(self, img):
        for op in random.choice(self.policy):
            img = op(img)
        return img


# ----------------------------------------------------------------------------- config string
def _sections(config_str: str) -> Tuple[str, List[Tuple[str, str]]]:
    """'rand-m9-mstd0.5' -> ('rand', [('m', '9'), ('mstd', '0.5')]); sections without digits are skipped."""
    head, *rest = config_str.split("-")
    sections = []
    for section in rest:
        parts = re.split(r"(\d.*)", section)
        if len(parts) >= 2:
            sections.append((parts[0], parts[1]))
    return head, sections


def _bad_section(config_str: str, key: str, known: str) -> ConfigError:
    return ConfigError("config_str", f"unknown section {key!r} in {config_str!r}", f"known sections: {known}")


def _parse_number(config_str: str, key: str, value: str, kind=float):
    try:
        return kind(value)
    except ValueError:
        raise ConfigError("config_str", f"section {key}{value} of {config_str!r} is not a number") from None


def build_augment(config_str: str, hparams: Dict[str, Any]):
    """The callable (PIL -> PIL) that ``config_str`` describes."""
    head, sections = _sections(config_str)
    if head == "rand":
        return _build_rand(config_str, sections, hparams)
    if head == "augmix":
        return _build_augmix(config_str, sections, dict(hparams, translate_pct=0.3))
    if head in AUTO_POLICIES:
        for key, value in sections:
            if key != "mstd":
                raise _bad_section(config_str, key, "mstd")
            hparams.setdefault("magnitude_std", _parse_number(config_str, key, value))
        return _AutoAugment([[AugmentOp(n, p, m, hparams) for n, p, m in sub] for sub in AUTO_POLICIES[head]])
    raise ConfigError("config_str", f"unknown augmentation {config_str!r}",
                      f"start with rand (RandAugment), augmix, or an AutoAugment policy ({', '.join(AUTO_POLICIES)}), "
                      f"e.g. rand-m9-mstd0.5-inc1")


def _build_rand(config_str: str, sections, hparams: Dict[str, Any]) -> _RandAugment:
    magnitude, num_layers, weight_idx, transforms = MAX_LEVEL, 2, None, RAND_TRANSFORMS
    for key, value in sections:
        if key == "mstd":
            hparams.setdefault("magnitude_std", _parse_number(config_str, key, value))
        elif key == "inc":
            if _parse_number(config_str, key, value, int):
                transforms = RAND_INCREASING_TRANSFORMS
        elif key == "m":
            magnitude = _parse_number(config_str, key, value, int)
        elif key == "n":
            num_layers = _parse_number(config_str, key, value, int)
        elif key == "w":
            weight_idx = _parse_number(config_str, key, value, int)
            if weight_idx != 0:
                raise ConfigError("config_str", f"only the weights w0 exist, got w{value} in {config_str!r}")
        else:
            raise _bad_section(config_str, key, "m, n, w, mstd, inc")
    weights = None
    if weight_idx is not None:
        weights = np.array(RAND_CHOICE_WEIGHTS_0) / np.sum(RAND_CHOICE_WEIGHTS_0)
    return _RandAugment([AugmentOp(name, 0.5, magnitude, hparams) for name in transforms], num_layers, weights)


def _build_augmix(config_str: str, sections, hparams: Dict[str, Any]) -> _AugMix:
    magnitude, width, depth, alpha, blended = 3, 3, -1, 1.0, False
    for key, value in sections:
        if key == "mstd":
            hparams.setdefault("magnitude_std", _parse_number(config_str, key, value))
        elif key == "m":
            magnitude = _parse_number(config_str, key, value, int)
        elif key == "w":
            width = _parse_number(config_str, key, value, int)
        elif key == "d":
            depth = _parse_number(config_str, key, value, int)
        elif key == "a":
            alpha = _parse_number(config_str, key, value)
        elif key == "b":
            blended = bool(_parse_number(config_str, key, value, int))
        else:
            raise _bad_section(config_str, key, "m, w, d, a, b, mstd")
    ops = [AugmentOp(name, 1.0, magnitude, hparams) for name in AUGMIX_TRANSFORMS]
    return _AugMix(ops, alpha, width, depth, blended)


@OPS.register
class TimmAutoAugment:
    """With probability ``prob``, apply the augmentation ``config_str`` describes (module docstring).

    Args:
        prob: probability of augmenting an image.
        config_str: e.g. 'rand-m9-mstd0.5-inc1'.
        interpolation: resampling of geometric operations ('bicubic'; 'random' for bilinear or
            bicubic per operation; any other name but lanczos / hamming: bilinear).
        img_size: int or [w, h]; translations (``TranslateX``) are up to 0.45 x its smaller side.
        mean: fill colour (0-1 per channel) of geometric operations.
    """

    def __init__(self, prob: float = 1.0, config_str: str = "rand-m9-mstd0.5-inc1", interpolation: str = "bicubic",
                 img_size: Any = 224, mean: Sequence[float] = IMAGENET_DEFAULT_MEAN):
        self.prob = probability(prob, "prob")
        if not isinstance(config_str, str) or not config_str:
            raise ConfigError("config_str", f"expected a string such as 'rand-m9-mstd0.5-inc1', got {config_str!r}",
                              "to turn the op off, set prob: 0.0 or remove it")
        sizes = img_size if isinstance(img_size, (list, tuple)) else [img_size]
        if not sizes:
            raise ConfigError("img_size", "expected an integer or a list of integers, got []")
        if not isinstance(mean, (list, tuple)) or len(mean) != 3:
            raise ConfigError("mean", f"expected 3 numbers in [0, 1], got {mean!r}")
        hparams: Dict[str, Any] = {
            "translate_const": int(min(positive_int(s, "img_size") for s in sizes) * 0.45),
            "img_mean": tuple(min(255, round(255 * number(m, "mean", 0.0, 1.0))) for m in mean),
        }
        if interpolation and interpolation != "random":
            hparams["interpolation"] = pil_ops.resample_of(interpolation)
        self.augment = build_augment(config_str, hparams)
        self.is_random = self.prob > 0  # prob 0 never augments: deterministic

    def __call__(self, img: np.ndarray) -> np.ndarray:
        if random.random() < self.prob:
            return from_pil(self.augment(to_pil(img, "TimmAutoAugment")))
        return img
