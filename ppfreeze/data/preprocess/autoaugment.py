"""AutoAugment's ImageNet policy (Cubuk et al. 2018) as PaddleClas's ``AutoAugment`` op applies it.

A policy is a list of sub-policies; each image gets one sub-policy drawn uniformly, whose two
operations each run with their own probability. Magnitudes are indices 0-9 into per-operation
ranges. Random draws (``random``) are PaddleClas's, in the same order: sub-policy index, then
per operation "does it run" and, when it runs, the sign of signed magnitudes.
"""
from __future__ import annotations

import random
from typing import Callable, Dict, Sequence, Tuple

import numpy as np

from ..registry import OPS
from . import pil_ops
from .common import color, from_pil, to_pil


def _levels() -> Dict[str, Sequence[float]]:
    """Magnitude index (0-9) -> parameter, per operation."""
    zeros = [0] * 10
    return {
        "shearX": np.linspace(0, 0.3, 10), "shearY": np.linspace(0, 0.3, 10),
        "translateX": np.linspace(0, 150 / 331, 10), "translateY": np.linspace(0, 150 / 331, 10),
        "rotate": np.linspace(0, 30, 10),
        "color": np.linspace(0.0, 0.9, 10), "contrast": np.linspace(0.0, 0.9, 10),
        "sharpness": np.linspace(0.0, 0.9, 10), "brightness": np.linspace(0.0, 0.9, 10),
        "posterize": np.round(np.linspace(8, 4, 10), 0).astype(np.int_),
        "solarize": np.linspace(256, 0, 10),
        "autocontrast": zeros, "equalize": zeros, "invert": zeros,
        "cutout": np.round(np.linspace(0, 20, 10), 0).astype(np.int_),
    }


LEVELS = _levels()


def _sign() -> int:
    return random.choice([-1, 1])


def sub_policy_operation(name: str, fill: Tuple[int, ...]) -> Callable:
    """``op(img, magnitude)`` for an operation of AutoAugment's sub-policies."""
    _, _, bicubic = pil_ops.pil_constants()
    operations = {
        "shearX": lambda img, m: pil_ops.shear_x(img, m * _sign(), bicubic, fill),
        "shearY": lambda img, m: pil_ops.shear_y(img, m * _sign(), bicubic, fill),
        "translateX": lambda img, m: pil_ops.translate_x(img, m * img.size[0] * _sign(), None, fill),
        "translateY": lambda img, m: pil_ops.translate_y(img, m * img.size[1] * _sign(), None, fill),
        "rotate": lambda img, m: pil_ops.rotate_gray_fill(img, m),
        "color": lambda img, m: pil_ops.enhance("Color", img, 1 + m * _sign()),
        "contrast": lambda img, m: pil_ops.enhance("Contrast", img, 1 + m * _sign()),
        "sharpness": lambda img, m: pil_ops.enhance("Sharpness", img, 1 + m * _sign()),
        "brightness": lambda img, m: pil_ops.enhance("Brightness", img, 1 + m * _sign()),
        "posterize": lambda img, m: pil_ops.posterize(img, m),
        "solarize": lambda img, m: pil_ops.solarize(img, m),
        "autocontrast": lambda img, m: pil_ops.autocontrast(img),
        "equalize": lambda img, m: pil_ops.equalize(img),
        "invert": lambda img, m: pil_ops.invert(img),
        "cutout": lambda img, m: pil_ops.cutout_square(img, m),
    }
    return operations[name]


class SubPolicy:
    """Two operations ``(probability, name, magnitude index)`` applied in turn."""

    def __init__(self, first: Tuple[float, str, int], second: Tuple[float, str, int],
                 fill: Tuple[int, ...] = (128, 128, 128)):
        self.steps = [(p, sub_policy_operation(name, fill), LEVELS[name][level]) for p, name, level in (first, second)]

    def __call__(self, img):
        for p, operation, magnitude in self.steps:
            if random.random() < p:
                img = operation(img, magnitude)
        return img


# The ImageNet policy of AutoAugment (as PaddleClas lists it: 25 sub-policies).
IMAGENET_POLICY = [
    ((0.4, "posterize", 8), (0.6, "rotate", 9)), ((0.6, "solarize", 5), (0.6, "autocontrast", 5)),
    ((0.8, "equalize", 8), (0.6, "equalize", 3)), ((0.6, "posterize", 7), (0.6, "posterize", 6)),
    ((0.4, "equalize", 7), (0.2, "solarize", 4)), ((0.4, "equalize", 4), (0.8, "rotate", 8)),
    ((0.6, "solarize", 3), (0.6, "equalize", 7)), ((0.8, "posterize", 5), (1.0, "equalize", 2)),
    ((0.2, "rotate", 3), (0.6, "solarize", 8)), ((0.6, "equalize", 8), (0.4, "posterize", 6)),
    ((0.8, "rotate", 8), (0.4, "color", 0)), ((0.4, "rotate", 9), (0.6, "equalize", 2)),
    ((0.0, "equalize", 7), (0.8, "equalize", 8)), ((0.6, "invert", 4), (1.0, "equalize", 8)),
    ((0.6, "color", 4), (1.0, "contrast", 8)), ((0.8, "rotate", 8), (1.0, "color", 2)),
    ((0.8, "color", 8), (0.8, "solarize", 7)), ((0.4, "sharpness", 7), (0.6, "invert", 8)),
    ((0.6, "shearX", 5), (1.0, "equalize", 9)), ((0.4, "color", 0), (0.6, "equalize", 3)),
    ((0.4, "equalize", 7), (0.2, "solarize", 4)), ((0.6, "solarize", 5), (0.6, "autocontrast", 5)),
    ((0.6, "invert", 4), (1.0, "equalize", 8)), ((0.6, "color", 4), (1.0, "contrast", 8)),
    ((0.8, "equalize", 8), (0.6, "equalize", 3)),
]


@OPS.register
class AutoAugment:
    """AutoAugment's ImageNet policy on uint8 HWC images (PaddleClas ``AutoAugment``).

    Args:
        fillcolor: colour of the area uncovered by shear and translate (rotation fills grey 128).
    """

    is_random = True  # a new draw every epoch: Freeze.cache_features must not reuse features

    def __init__(self, fillcolor: Sequence[int] = (128, 128, 128)):
        fill = tuple(int(v) for v in color(fillcolor, "fillcolor"))
        self.policies = [SubPolicy(first, second, fill) for first, second in IMAGENET_POLICY]

    def __call__(self, img: np.ndarray) -> np.ndarray:
        policy = self.policies[random.randint(0, len(self.policies) - 1)]
        return from_pil(policy(to_pil(img, "AutoAugment")))
