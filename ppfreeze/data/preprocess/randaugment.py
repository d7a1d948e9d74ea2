"""PaddleClas's RandAugment variants (Cubuk et al. 2019) on uint8 HWC images.

- ``RandAugment``: ``num_layers`` operations drawn uniformly (``np.random.choice``), each at
  the fixed ``magnitude`` (of 10).
- ``RandAugmentV2`` (EfficientNetV2): the TF EfficientNet operation set (absolute translate,
  enhancement factors 0.1-1.9, SolarizeAdd, Cutout), nearest resampling.
- ``RandAugmentV3`` (MobileViTV2): configurable resampling and fill, posterize / solarize
  strength growing with the magnitude.
- ``RandAugmentV4`` (ML-Decoder): a uniformly drawn pair of AutoAugment-style operations, each
  applied with probability 0.5 at a magnitude index 1-9.

Random draws are PaddleClas's calls on ``random`` and numpy's global RNG, in the same order.
"""
from __future__ import annotations

import logging
import random
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from ...config.errors import ConfigError
from ..registry import OPS
from . import pil_ops
from .autoaugment import SubPolicy, sub_policy_operation
from .common import color, from_pil, number, positive_int, to_pil

logger = logging.getLogger("ppfreeze")


def _sign() -> int:
    return random.choice([-1, 1])


def _fill(fillcolor: Any) -> Tuple[int, ...]:
    return tuple(int(v) for v in color(fillcolor, "fillcolor"))


class _LayeredRandAugment:
    """``num_layers`` times: draw an operation name uniformly (numpy), apply it at its level."""

    is_random = True  # a new draw every epoch: Freeze.cache_features must not reuse features

    def _setup(self, num_layers: int, magnitude: float, levels: Dict[str, Any],
               operations: Dict[str, Callable]) -> None:
        self.num_layers = positive_int(num_layers, "num_layers")
        self.magnitude = number(magnitude, "magnitude", 0.0)
        self.names = list(levels)  # the draw indexes this order
        self.levels = levels
        self.operations = operations

    def __call__(self, img: np.ndarray) -> np.ndarray:
        pil = to_pil(img, type(self).__name__)
        for _ in range(self.num_layers):
            name = self.names[np.random.choice(len(self.names))]
            pil = self.operations[name](pil, self.levels[name])
        return from_pil(pil)


@OPS.register
class RandAugment(_LayeredRandAugment):
    """RandAugment with AutoAugment's operations (``magnitude`` of 10).

    Args:
        num_layers: operations per image.
        magnitude: strength, 0-10.
        fillcolor: colour of the area uncovered by shear and translate (rotation fills grey 128).
    """

    def __init__(self, num_layers: int = 2, magnitude: float = 5, fillcolor: Sequence[int] = (128, 128, 128)):
        level = number(magnitude, "magnitude", 0.0) / 10
        levels = {"shearX": 0.3 * level, "shearY": 0.3 * level, "translateX": 150.0 / 331 * level,
                  "translateY": 150.0 / 331 * level, "rotate": 30 * level, "color": 0.9 * level,
                  "posterize": int(4.0 * level), "solarize": 256.0 * level, "contrast": 0.9 * level,
                  "sharpness": 0.9 * level, "brightness": 0.9 * level, "autocontrast": 0, "equalize": 0, "invert": 0}
        fill = _fill(fillcolor)
        self._setup(num_layers, magnitude, levels, {name: sub_policy_operation(name, fill) for name in levels})


@OPS.register
class RandAugmentV2(_LayeredRandAugment):
    """EfficientNetV2's RandAugment.

    Args:
        num_layers: operations per image.
        magnitude: strength, 0-10.
        progress_magnitude: magnitudes of PaddleClas's progressive-training stages; only that
            trainer reads them, so they are checked and otherwise unused.
        fillcolor: fill of shear / translate / rotate; its first value fills Cutout.
    """

    def __init__(self, num_layers: int = 2, magnitude: float = 5, progress_magnitude: Optional[Sequence[float]] = None,
                 fillcolor: Sequence[int] = (128, 128, 128)):
        if progress_magnitude is not None:
            if not isinstance(progress_magnitude, (list, tuple)) or not progress_magnitude:
                raise ConfigError("progress_magnitude", f"expected a list of magnitudes, got {progress_magnitude!r}")
            for value in progress_magnitude:
                number(value, "progress_magnitude", 0.0)
            logger.info("RandAugmentV2: progress_magnitude is read by PaddleClas's progressive trainer only; "
                        "ppfreeze uses magnitude %s", magnitude)
        level = number(magnitude, "magnitude", 0.0) / 10
        enhance = 1.8 * level + 0.1
        levels = {"shearX": 0.3 * level, "shearY": 0.3 * level, "translateX": 100.0 * level,
                  "translateY": 100.0 * level, "rotate": 30 * level, "color": enhance,
                  "posterize": int(4.0 * level), "solarize": int(256.0 * level), "solarize_add": int(110.0 * level),
                  "contrast": enhance, "sharpness": enhance, "brightness": enhance, "autocontrast": 0,
                  "equalize": 0, "invert": 0, "cutout": int(40 * level)}
        self._setup(num_layers, magnitude, levels, self._operations(_fill(fillcolor)))

    @staticmethod
    def _operations(fill: Tuple[int, ...]) -> Dict[str, Callable]:
        nearest, _, _ = pil_ops.pil_constants()
        return {
            "shearX": lambda img, m: pil_ops.shear_x(img, m * _sign(), nearest, fill),
            "shearY": lambda img, m: pil_ops.shear_y(img, m * _sign(), nearest, fill),
            "translateX": lambda img, m: pil_ops.translate_x(img, m * _sign(), nearest, fill),
            "translateY": lambda img, m: pil_ops.translate_y(img, m * _sign(), nearest, fill),
            "rotate": lambda img, m: pil_ops.rotate_gray_fill(img, m * _sign()),
            "color": lambda img, m: pil_ops.enhance("Color", img, m),
            "posterize": lambda img, m: pil_ops.posterize(img, m),
            "solarize": lambda img, m: pil_ops.solarize(img, m),
            "solarize_add": lambda img, m: pil_ops.solarize_add(img, m),
            "contrast": lambda img, m: pil_ops.enhance("Contrast", img, m),
            "sharpness": lambda img, m: pil_ops.enhance("Sharpness", img, m),
            "brightness": lambda img, m: pil_ops.enhance("Brightness", img, m),
            "autocontrast": lambda img, m: pil_ops.autocontrast(img),
            "equalize": lambda img, m: pil_ops.equalize(img),
            "invert": lambda img, m: pil_ops.invert(img),
            "cutout": lambda img, m: pil_ops.cutout_square(img, m, replace=fill[0]),
        }


@OPS.register
class RandAugmentV3(_LayeredRandAugment):
    """MobileViTV2's RandAugment.

    Args:
        num_layers: operations per image.
        magnitude: strength, 0-10.
        fillcolor: fill of shear / translate / rotate.
        interpolation: 'bicubic', or (any other name but lanczos / hamming) bilinear resampling.
    """

    def __init__(self, num_layers: int = 2, magnitude: float = 3, fillcolor: Sequence[int] = (0, 0, 0),
                 interpolation: str = "bicubic"):
        resample = pil_ops.resample_of(interpolation)
        level = number(magnitude, "magnitude", 0.0) / 10
        levels = {"shearX": 0.3 * level, "shearY": 0.3 * level, "translateX": 150.0 / 331.0 * level,
                  "translateY": 150.0 / 331.0 * level, "rotate": 30 * level, "color": 0.9 * level,
                  "posterize": 8 - int(4.0 * level), "solarize": 255.0 * (1 - level), "contrast": 0.9 * level,
                  "sharpness": 0.9 * level, "brightness": 0.9 * level, "autocontrast": 0, "equalize": 0, "invert": 0}
        self._setup(num_layers, magnitude, levels, self._operations(_fill(fillcolor), resample))

    @staticmethod
    def _operations(fill: Tuple[int, ...], resample: int) -> Dict[str, Callable]:
        return {
            "shearX": lambda img, m: pil_ops.shear_x(img, m * _sign(), resample, fill),
            "shearY": lambda img, m: pil_ops.shear_y(img, m * _sign(), resample, fill),
            "translateX": lambda img, m: pil_ops.translate_x(img, m * img.size[0] * _sign(), resample, fill),
            "translateY": lambda img, m: pil_ops.translate_y(img, m * img.size[1] * _sign(), resample, fill),
            "rotate": lambda img, m: pil_ops.rotate(img, m * _sign(), resample, fill),
            "color": lambda img, m: pil_ops.enhance("Color", img, 1 + m * _sign()),
            "posterize": lambda img, m: pil_ops.posterize(img, m),
            "solarize": lambda img, m: pil_ops.solarize(img, m),
            "contrast": lambda img, m: pil_ops.enhance("Contrast", img, 1 + m * _sign()),
            "sharpness": lambda img, m: pil_ops.enhance("Sharpness", img, 1 + m * _sign()),
            "brightness": lambda img, m: pil_ops.enhance("Brightness", img, 1 + m * _sign()),
            "autocontrast": lambda img, m: pil_ops.autocontrast(img),
            "equalize": lambda img, m: pil_ops.equalize(img),
            "invert": lambda img, m: pil_ops.invert(img),
        }


@OPS.register
class RandAugmentV4:
    """ML-Decoder's RandAugment: one of all ordered pairs of (operation, magnitude index 1-9),
    drawn uniformly; each operation runs with probability 0.5 (no arguments)."""

    is_random = True  # a new draw every epoch: Freeze.cache_features must not reuse features
    operations = ("shearX", "shearY", "translateX", "translateY", "rotate", "color", "posterize", "solarize",
                  "contrast", "sharpness", "brightness", "autocontrast", "equalize", "invert", "cutout")
    magnitudes = range(1, 10)

    def __init__(self):
        # (p, name, magnitude) in PaddleClas's order: operation-major, then magnitude
        self.steps = [(0.5, name, m) for name in self.operations for m in self.magnitudes]

    def __call__(self, img: np.ndarray) -> np.ndarray:
        n = len(self.steps)
        index = random.randint(0, n * n - 1)  # one of the n x n ordered pairs
        policy = SubPolicy(self.steps[index // n], self.steps[index % n])
        return from_pil(policy(to_pil(img, "RandAugmentV4")))


@OPS.register
class RandomApply:
    """Apply ``transforms`` (a PaddleClas op list, e.g. ``[{RawColorJitter: {...}}]``) in order with
    probability ``p``: skipped when ``p < np.random.rand()``, PaddleClas's single draw."""

    is_random = True

    def __init__(self, p: float, transforms: Sequence[Any]):
        from .build import create_operators
        self.p = number(p, "p", 0.0, 1.0)
        self.transforms = create_operators(list(transforms or []), "transforms")

    def __call__(self, img: Any) -> Any:
        if self.p < np.random.rand(1)[0]:
            return img
        for op in self.transforms:
            img = op(img)
        return img
