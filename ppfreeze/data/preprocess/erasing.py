"""Occlusion augmentations: RandomErasing, Cutout, HideAndSeek, GridMask (numpy).

They work on HWC arrays, and on CHW ones when an earlier op made the layout CHW (``ToTensor``,
``ToCHWImage``; ``create_operators`` sets ``channel_first``). Random draws are PaddleClas's
calls on Python's ``random`` and numpy's global RNG, in the same order.
"""
from __future__ import annotations

import logging
import math
import random
from typing import Any, Sequence, Tuple, Union

import numpy as np

from ...config.errors import ConfigError
from ..registry import OPS
from .common import color, flag, number, one_of, positive_int, probability, spatial_axes

logger = logging.getLogger("ppfreeze")


def _channel_axis(channel_first: bool) -> int:
    return 0 if channel_first else 2


@OPS.register
class RandomErasing:
    """With probability ``EPSILON``, replace a random rectangle (Zhong et al. 2017).

    Args:
        EPSILON: probability of erasing.
        sl, sh: range of the rectangle's share of the image area.
        r1: aspect ratios are drawn from [r1, 1/r1] (in log space with ``use_log_aspect``).
        mean: the fill of mode 'const'.
        attempt: rectangles drawn until one fits; none fitting leaves the image unchanged.
        use_log_aspect: draw the aspect ratio uniformly in log space.
        mode: 'const' (``mean``), 'rand' (one normal draw per channel), 'pixel' (per pixel).

    As in PaddleClas, a 3-channel image is erased in every channel, any other only in its first.
    """

    def __init__(self, EPSILON: float = 0.5, sl: float = 0.02, sh: float = 0.4, r1: float = 0.3,
                 mean: Sequence[float] = (0.0, 0.0, 0.0), attempt: int = 100, use_log_aspect: bool = False,
                 mode: str = "const"):
        self.EPSILON = probability(EPSILON, "EPSILON")
        self.sl = number(sl, "sl", 0.0, 1.0)
        self.sh = number(sh, "sh", 0.0, 1.0)
        if self.sl > self.sh:
            raise ConfigError("sl", f"expected sl <= sh, got sl={sl!r}, sh={sh!r}")
        r1 = number(r1, "r1")
        if r1 <= 0:
            raise ConfigError("r1", f"expected a positive aspect ratio, got {r1!r}")
        self.use_log_aspect = flag(use_log_aspect, "use_log_aspect")
        self.r1 = (math.log(r1), math.log(1 / r1)) if self.use_log_aspect else (r1, 1 / r1)
        if not isinstance(mean, (list, tuple)) or not mean:
            raise ConfigError("mean", f"expected a list of per-channel values, got {mean!r}")
        self.mean = np.array([number(m, "mean") for m in mean])
        self.attempt = positive_int(attempt, "attempt")
        self.mode = one_of(mode, "mode", ("const", "rand", "pixel"))
        self.is_random = self.EPSILON > 0  # EPSILON 0 never erases: deterministic
        self.channel_first = False  # set by create_operators from the ops before this one

    def __call__(self, img: np.ndarray) -> np.ndarray:
        if random.random() > self.EPSILON:
            return img
        c_axis = _channel_axis(self.channel_first)
        h_axis, w_axis = spatial_axes(img, self.channel_first)
        img_h, img_w, img_c = img.shape[h_axis], img.shape[w_axis], img.shape[c_axis]
        area = img_h * img_w
        for _ in range(self.attempt):
            target_area = random.uniform(self.sl, self.sh) * area
            aspect = random.uniform(*self.r1)
            if self.use_log_aspect:
                aspect = math.exp(aspect)
            h = int(round(math.sqrt(target_area * aspect)))
            w = int(round(math.sqrt(target_area / aspect)))
            if w < img_w and h < img_h:
                fill = self._fill(h, w, img_c)  # drawn before the position, as PaddleClas does
                top = random.randint(0, img_h - h)
                left = random.randint(0, img_w - w)
                return self._erase(img, top, left, h, w, fill)
        return img

    def _fill(self, h: int, w: int, c: int) -> np.ndarray:
        """The replacement values, shaped (and drawn) in the image's layout."""
        shape = (c, h, w) if self.channel_first else (h, w, c)
        if self.mode == "rand":
            return np.random.normal(size=(3, 1, 1) if self.channel_first else (1, 1, 3))
        if self.mode == "pixel":
            return np.random.normal(size=shape)
        if self.mean.size != c:
            raise ValueError(f"RandomErasing: mean has {self.mean.size} values but the image has {c} channels")
        return self.mean.reshape((c, 1, 1) if self.channel_first else (1, 1, c))

    def _erase(self, img: np.ndarray, top: int, left: int, h: int, w: int, fill: np.ndarray) -> np.ndarray:
        out = img.copy()
        if self.channel_first:
            if img.shape[0] == 3:
                out[:, top:top + h, left:left + w] = fill
            else:
                out[0, top:top + h, left:left + w] = fill[0]
        elif img.shape[2] == 3:
            out[top:top + h, left:left + w, :] = fill
        else:
            out[top:top + h, left:left + w, 0] = fill[:, :, 0]
        return out


@OPS.register
class Cutout:
    """Fill ``n_holes`` squares of side ``length`` (clipped at the borders) at random centres
    (DeVries & Taylor 2017).

    Args:
        n_holes: squares per image.
        length: side of a square (corners at centre -/+ length // 2, both included).
        fill_value: 'none' (or null) draws a random colour per square, as PaddleClas's configs
            use; otherwise one number or one per channel. (PaddleClas's own op fails with any
            other fill_value; here it is the square's colour.)
    """

    is_random = True  # a new draw every epoch: Freeze.cache_features must not reuse features

    def __init__(self, n_holes: int = 1, length: int = 112, fill_value: Any = (0, 0, 0)):
        self.n_holes = positive_int(n_holes, "n_holes")
        self.length = positive_int(length, "length")
        self.fill_value = None if fill_value is None or fill_value == "none" else color(fill_value, "fill_value")
        self.channel_first = False  # set by create_operators from the ops before this one

    def __call__(self, img: np.ndarray) -> np.ndarray:
        h_axis, w_axis = spatial_axes(img, self.channel_first)
        h, w = img.shape[h_axis], img.shape[w_axis]
        out = np.array(img)
        half = self.length // 2
        for _ in range(self.n_holes):
            y = np.random.randint(h)
            x = np.random.randint(w)
            y1, y2 = np.clip(y - half, 0, h), np.clip(y + half, 0, h)
            x1, x2 = np.clip(x - half, 0, w), np.clip(x + half, 0, w)
            fill = self._colour(out)
            if self.channel_first:
                out[:, y1:y2 + 1, x1:x2 + 1] = np.reshape(fill, (-1, 1, 1))
            else:
                out[y1:y2 + 1, x1:x2 + 1] = fill
        return out

    def _colour(self, img: np.ndarray) -> Union[int, Tuple[float, ...]]:
        if self.fill_value is not None:
            return self.fill_value if img.ndim == 3 else self.fill_value[0]
        if img.ndim == 2:
            return random.randint(0, 255)
        return tuple(random.randint(0, 255) for _ in range(3))


@OPS.register
class HideAndSeek:
    """Split the image into a grid of square patches (side drawn from 0, 16, 32, 44, 56; 0 = no
    hiding) and zero each patch with probability 0.5 (Singh & Lee 2017)."""

    is_random = True  # a new draw every epoch: Freeze.cache_features must not reuse features
    grid_sizes = (0, 16, 32, 44, 56)
    hide_prob = 0.5

    def __init__(self):
        self.channel_first = False  # set by create_operators from the ops before this one

    def __call__(self, img: np.ndarray) -> np.ndarray:
        grid = int(self.grid_sizes[np.random.choice(len(self.grid_sizes))])
        if grid == 0:
            return img
        h_axis, w_axis = spatial_axes(img, self.channel_first)
        h, w = img.shape[h_axis], img.shape[w_axis]
        out = img.copy()
        rows = out.transpose((1, 2, 0)) if self.channel_first else out  # an HWC view of the same memory
        # PaddleClas walks the patches row band by row band (its loop is written for CHW input).
        for top in range(0, h, grid):
            for left in range(0, w, grid):
                if random.random() <= self.hide_prob:
                    rows[top:top + grid, left:left + grid] = 0
        return out


@OPS.register
class GridMask:
    """Zero a rotated grid of squares (Chen et al. 2020) with probability ``prob``.

    Args:
        d1, d2: the grid period is drawn from [d1, d2).
        rotate: the grid is rotated by a whole angle drawn from [0, rotate) degrees.
        ratio: share of each period that is masked (square side = period x ratio).
        mode: 0 masks the squares, 1 keeps only them.
        prob: probability of masking an image.

    PaddleClas ramps the probability from 0 to ``prob`` with a module-level epoch counter that
    its trainer never advances, so there the mask is never applied; here it is applied with
    probability ``prob`` from the first epoch.
    """

    def __init__(self, d1: int = 96, d2: int = 224, rotate: int = 1, ratio: float = 0.5, mode: int = 0,
                 prob: float = 1.0):
        self.d1 = positive_int(d1, "d1")
        self.d2 = positive_int(d2, "d2")
        if self.d2 <= self.d1:
            raise ConfigError("d2", f"expected d2 > d1, got d1={d1!r}, d2={d2!r}")
        self.rotate = positive_int(rotate, "rotate")
        self.ratio = number(ratio, "ratio", 0.0, 1.0)
        self.mode = one_of(mode, "mode", (0, 1))
        self.prob = probability(prob, "prob")
        self.is_random = self.prob > 0  # prob 0 never masks: deterministic
        self.channel_first = False  # set by create_operators from the ops before this one
        logger.warning("GridMask: applied with probability %s from the first epoch (PaddleClas's GridMask never "
                       "masks: its epoch counter stays 0), so results differ from PaddleClas runs", self.prob)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        if np.random.rand() > self.prob:
            return img
        h_axis, w_axis = spatial_axes(img, self.channel_first)
        mask = self.mask(img.shape[h_axis], img.shape[w_axis])
        mask = mask[None] if self.channel_first else mask[:, :, None]
        return (img * mask).astype(img.dtype)

    def mask(self, h: int, w: int) -> np.ndarray:
        """Draw one ``h`` x ``w`` mask of 0s and 1s."""
        from PIL import Image
        big_h, big_w = int(1.5 * h), int(1.5 * w)
        period = np.random.randint(self.d1, self.d2)
        side = int(period * self.ratio + 0.5)
        mask = np.ones((big_h, big_w), np.float32)
        start_h = np.random.randint(period)
        start_w = np.random.randint(period)
        for i in range(-1, big_h // period + 1):
            s = min(max(period * i + start_h, 0), big_h)
            mask[s:min(max(period * i + start_h + side, 0), big_h), :] = 0
        for i in range(-1, big_w // period + 1):
            s = min(max(period * i + start_w, 0), big_w)
            mask[:, s:min(max(period * i + start_w + side, 0), big_w)] = 0
        angle = np.random.randint(self.rotate)
        mask = np.asarray(Image.fromarray(np.uint8(mask)).rotate(angle))
        top, left = (big_h - h) // 2, (big_w - w) // 2
        mask = mask[top:top + h, left:left + w]
        return 1 - mask if self.mode == 1 else mask
