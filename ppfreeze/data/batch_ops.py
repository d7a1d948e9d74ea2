"""Batch ops (``DataLoader.Train.dataset.batch_transform_ops``): mixup and cutmix (numpy only).

A batch op takes the list of samples ``(image CHW, label id, *extra)`` and returns the list with
mixed images and soft labels ``(image float32, target float32 [classes], *extra)``, as
PaddleClas's ops do before its collate stacks them. ``extra`` fields (the dataset index the
Freeze feature cache asks for) pass through untouched.

Random draws are PaddleClas's calls on numpy's global RNG and Python's ``random``, in the same
order. The loader seeds both per batch from the batch's samples (``loader.BatchTransformCollate``),
so a batch's mixing is a function of (seed, epoch, the batch), whatever ``num_workers`` is.

``class_num`` is not a config argument: the loader passes the model's ``Arch.class_num``, as
PaddleClas does.
"""
from __future__ import annotations

import inspect
import random
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..config.errors import ConfigError, did_you_mean
from ..utils.builder import check_kwargs, split_component
from .preprocess.common import flag, number, one_of, positive_int, probability
from .registry import BATCH_OPS

Sample = Tuple[Any, ...]


def _need_class_num(class_num: Optional[int], op: str) -> int:
    if isinstance(class_num, bool) or not isinstance(class_num, int) or class_num <= 0:
        raise ConfigError("Arch.class_num", f"{op} needs the number of classes, got {class_num!r}",
                          "set Arch.class_num (or Global.class_num)")
    return class_num


def _positive(value: Any, key: str) -> float:
    result = number(value, key)
    if result <= 0:
        raise ConfigError(key, f"expected a number > 0, got {value!r}")
    return result


def unpack(batch: List[Sample]) -> Tuple[np.ndarray, np.ndarray, List[Tuple[Any, ...]]]:
    """(images N x C x H x W float32, label ids N, the other fields of each sample)."""
    if not batch:
        raise ValueError("a batch op got an empty batch")
    images = np.stack([np.asarray(s[0]) for s in batch]).astype(np.float32, copy=False)
    if any(np.asarray(s[1]).size != 1 for s in batch):
        raise ValueError("a batch op got soft labels: list one mixing op per batch (OpSampler picks one of "
                         "several), not two in a row")
    labels = np.array([np.asarray(s[1]).reshape(-1)[0] for s in batch]).astype(np.int64)
    return images, labels, [tuple(s[2:]) for s in batch]


def repack(images: np.ndarray, targets: np.ndarray, rest: List[Tuple[Any, ...]]) -> List[Sample]:
    """The inverse of :func:`unpack`, with soft ``targets``."""
    return [(img, target, *extra) for img, target, extra in zip(images, targets, rest)]


def one_hot(labels: np.ndarray, class_num: int, on: float = 1.0, off: float = 0.0) -> np.ndarray:
    """``[N, class_num]`` float32 rows of ``off`` with ``on`` at each label."""
    if labels.size and (labels.min() < 0 or labels.max() >= class_num):
        raise ValueError(f"label {int(labels.max())} is outside [0, {class_num}); Arch.class_num (or the batch op's "
                         f"num_classes) must exceed every label")
    out = np.full((labels.size, class_num), off, dtype=np.float32)
    out[np.arange(labels.size), labels] = on
    return out


class _PairMixOp:
    """Mixup-family op pairing each sample with a random permutation of the batch."""

    is_random = True  # a new draw every epoch: Freeze.cache_features must not reuse features

    def _mixed_targets(self, labels: np.ndarray, partner: np.ndarray, lam: float) -> np.ndarray:
        return one_hot(labels, self.class_num) * lam + one_hot(labels[partner], self.class_num) * (1 - lam)


@BATCH_OPS.register
class MixupOperator(_PairMixOp):
    """Mixup (Zhang et al. 2018): ``lam * x + (1 - lam) * x[perm]``, lam ~ Beta(alpha, alpha);
    targets mixed the same way."""

    def __init__(self, class_num: Optional[int] = None, alpha: float = 1.0):
        self.class_num = _need_class_num(class_num, "MixupOperator")
        self.alpha = _positive(alpha, "alpha")

    def __call__(self, batch: List[Sample]) -> List[Sample]:
        images, labels, rest = unpack(batch)
        partner = np.random.permutation(len(images))
        lam = np.random.beta(self.alpha, self.alpha)
        mixed = (lam * images + (1 - lam) * images[partner]).astype(np.float32)
        return repack(mixed, self._mixed_targets(labels, partner, lam), rest)


@BATCH_OPS.register
class CutmixOperator(_PairMixOp):
    """CutMix (Yun et al. 2019): paste a box of ``x[perm]`` into ``x``; lam ~ Beta(alpha, alpha)
    sets the box's area, and the targets mix by the pasted area actually kept."""

    def __init__(self, class_num: Optional[int] = None, alpha: float = 0.2):
        self.class_num = _need_class_num(class_num, "CutmixOperator")
        self.alpha = _positive(alpha, "alpha")

    def __call__(self, batch: List[Sample]) -> List[Sample]:
        images, labels, rest = unpack(batch)
        partner = np.random.permutation(len(images))
        lam = np.random.beta(self.alpha, self.alpha)
        h, w = images.shape[-2:]
        top, left, bottom, right = self._box(h, w, lam)
        images = images.copy()
        images[:, :, top:bottom, left:right] = images[partner, :, top:bottom, left:right]
        kept = 1 - float(bottom - top) * (right - left) / (h * w)
        return repack(images, self._mixed_targets(labels, partner, kept), rest)

    @staticmethod
    def _box(h: int, w: int, lam: float) -> Tuple[int, int, int, int]:
        """(top, left, bottom, right) of a box with sides ``sqrt(1 - lam)`` x the image's, clipped."""
        cut = np.sqrt(1.0 - lam)
        cut_h, cut_w = int(h * cut), int(w * cut)
        cy = np.random.randint(h)
        cx = np.random.randint(w)
        return (int(np.clip(cy - cut_h // 2, 0, h)), int(np.clip(cx - cut_w // 2, 0, w)),
                int(np.clip(cy + cut_h // 2, 0, h)), int(np.clip(cx + cut_w // 2, 0, w)))


@BATCH_OPS.register
class OpSampler:
    """Per batch, run one of the listed batch ops (or none) drawn with the ops' ``prob``.

    Written ``OpSampler: {MixupOperator: {alpha: 0.8, prob: 0.5}, CutmixOperator: {alpha: 1.0,
    prob: 0.5}}``; the probabilities must sum to at most 1, the rest is "no op" (the batch keeps
    its hard labels).
    """

    is_random = True  # a new draw every epoch: Freeze.cache_features must not reuse features

    def __init__(self, class_num: Optional[int] = None, **op_dict: Any):
        _need_class_num(class_num, "OpSampler")
        if not op_dict:
            raise ConfigError("", "OpSampler lists no batch op", "e.g. OpSampler: {MixupOperator: {alpha: 0.8, "
                                                                 "prob: 0.5}, CutmixOperator: {alpha: 1.0, prob: 0.5}}")
        self.ops: List[Any] = []
        self.weights: List[float] = []
        for name, params in op_dict.items():
            op, prob = self._build(name, params, class_num)
            self.ops.append(op)
            self.weights.append(prob)
        if sum(self.weights) > 1 + 1e-9:
            raise ConfigError("", f"the probabilities of the ops sum to {sum(self.weights)}, more than 1",
                              "lower the ops' prob values")
        self.ops.append(None)  # "no op" takes the remaining probability
        self.weights.append(1 - sum(self.weights))

    @staticmethod
    def _build(name: str, params: Any, class_num: int) -> Tuple[Any, float]:
        choices = [n for n in BATCH_OPS.names() if n != "OpSampler"]
        if name not in choices:
            raise ConfigError(name, f"unknown batch op '{name}'",
                              f"known: {', '.join(choices)}.{did_you_mean(name, choices)}")
        if not isinstance(params, dict) or "prob" not in params:
            raise ConfigError(f"{name}.prob", "missing: each op in OpSampler needs its probability",
                              f"e.g. {name}: {{alpha: 0.8, prob: 0.5}}")
        params = dict(params)
        prob = probability(params.pop("prob"), f"{name}.prob")
        factory = BATCH_OPS.get(name)
        check_kwargs(factory, params, name, name)
        if "class_num" in params:
            raise ConfigError(f"{name}.class_num", "is set from Arch.class_num", "remove it")
        try:
            return factory(class_num=class_num, **params), prob
        except ConfigError as e:
            raise ConfigError(f"{name}.{e.key}" if e.key else name, e.message, e.hint) from e

    def __call__(self, batch: List[Sample]) -> List[Sample]:
        op = random.choices(self.ops, weights=self.weights, k=1)[0]
        return op(batch) if op is not None else batch


@BATCH_OPS.register
class MixupCutmixHybrid:
    """timm's Mixup: mixup or cutmix against the reversed batch, with smoothed targets.

    Args:
        mixup_alpha, cutmix_alpha: Beta concentrations; an op with alpha 0 is off.
        cutmix_minmax: [min, max] box side ratios (then cutmix_alpha is 1 and boxes are drawn per side).
        prob: probability of mixing a batch (element / pair).
        switch_prob: probability of cutmix instead of mixup when both are on.
        mode: 'batch' (one lam per batch), 'pair' or 'elem' (per pair / element).
        correct_lam: set lam to the pasted box's true share after clipping at the border.
        label_smoothing: smoothing of the targets (``1 - s + s / C`` on, ``s / C`` off).
        num_classes: classes of the targets (must equal Arch.class_num).

    The batch size must be even.
    """

    is_random = True  # a new draw every epoch: Freeze.cache_features must not reuse features
    needs_even_batch = True

    def __init__(self, mixup_alpha: float = 1.0, cutmix_alpha: float = 0.0,
                 cutmix_minmax: Optional[Sequence[float]] = None, prob: float = 1.0, switch_prob: float = 0.5,
                 mode: str = "batch", correct_lam: bool = True, label_smoothing: float = 0.1, num_classes: int = 4):
        self.mixup_alpha = number(mixup_alpha, "mixup_alpha", low=0.0)
        self.cutmix_alpha = number(cutmix_alpha, "cutmix_alpha", low=0.0)
        self.cutmix_minmax = None
        if cutmix_minmax is not None:
            if not isinstance(cutmix_minmax, (list, tuple)) or len(cutmix_minmax) != 2:
                raise ConfigError("cutmix_minmax", f"expected [min, max] ratios, got {cutmix_minmax!r}")
            self.cutmix_minmax = tuple(number(v, "cutmix_minmax", 0.0, 1.0) for v in cutmix_minmax)
            self.cutmix_alpha = 1.0  # as timm: min/max boxes need no alpha
        if self.mixup_alpha <= 0 and self.cutmix_alpha <= 0:
            raise ConfigError("mixup_alpha", "mixup_alpha and cutmix_alpha are both 0: nothing would be mixed",
                              "set one of them > 0")
        self.mix_prob = probability(prob, "prob")
        self.switch_prob = probability(switch_prob, "switch_prob")
        self.mode = one_of(mode, "mode", ("batch", "pair", "elem"))
        self.correct_lam = flag(correct_lam, "correct_lam")
        self.label_smoothing = probability(label_smoothing, "label_smoothing")
        self.num_classes = positive_int(num_classes, "num_classes")

    # ------------------------------------------------------------------ parameters
    def _lam_mix(self, use_cutmix: bool) -> float:
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        return np.random.beta(alpha, alpha)

    def _params_per_batch(self) -> Tuple[float, bool]:
        lam, use_cutmix = 1.0, False
        if np.random.rand() < self.mix_prob:
            if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
                use_cutmix = np.random.rand() < self.switch_prob
            else:
                use_cutmix = self.cutmix_alpha > 0
            lam = float(self._lam_mix(use_cutmix))
        return lam, use_cutmix

    def _params_per_elem(self, n: int) -> Tuple[np.ndarray, np.ndarray]:
        use_cutmix = np.zeros(n, dtype=bool)
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = np.random.rand(n) < self.switch_prob
            lam_mix = np.where(use_cutmix, np.random.beta(self.cutmix_alpha, self.cutmix_alpha, size=n),
                               np.random.beta(self.mixup_alpha, self.mixup_alpha, size=n))
        elif self.mixup_alpha > 0:
            lam_mix = np.random.beta(self.mixup_alpha, self.mixup_alpha, size=n)
        else:
            use_cutmix = np.ones(n, dtype=bool)
            lam_mix = np.random.beta(self.cutmix_alpha, self.cutmix_alpha, size=n)
        lam = np.where(np.random.rand(n) < self.mix_prob, lam_mix.astype(np.float32), np.ones(n, np.float32))
        return lam, use_cutmix

    def _box_and_lam(self, shape: Tuple[int, ...], lam: float) -> Tuple[Tuple[int, int, int, int], float]:
        """A cutmix box (top, bottom, left, right) and the lam it implies."""
        img_h, img_w = shape[-2:]
        if self.cutmix_minmax is not None:
            cut_h = np.random.randint(int(img_h * self.cutmix_minmax[0]), int(img_h * self.cutmix_minmax[1]))
            cut_w = np.random.randint(int(img_w * self.cutmix_minmax[0]), int(img_w * self.cutmix_minmax[1]))
            top = np.random.randint(0, img_h - cut_h)
            left = np.random.randint(0, img_w - cut_w)
            box = (int(top), int(top + cut_h), int(left), int(left + cut_w))
        else:
            ratio = np.sqrt(1 - lam)
            cut_h, cut_w = int(img_h * ratio), int(img_w * ratio)
            cy = np.random.randint(0, img_h)
            cx = np.random.randint(0, img_w)
            box = (int(np.clip(cy - cut_h // 2, 0, img_h)), int(np.clip(cy + cut_h // 2, 0, img_h)),
                   int(np.clip(cx - cut_w // 2, 0, img_w)), int(np.clip(cx + cut_w // 2, 0, img_w)))
        if self.correct_lam or self.cutmix_minmax is not None:
            lam = 1.0 - (box[1] - box[0]) * (box[3] - box[2]) / float(img_h * img_w)
        return box, lam

    # ------------------------------------------------------------------ mixing
    def _mix_batch(self, x: np.ndarray) -> float:
        lam, use_cutmix = self._params_per_batch()
        if lam == 1.0:
            return 1.0
        if use_cutmix:
            (top, bottom, left, right), lam = self._box_and_lam(x.shape, lam)
            if top < bottom and left < right:
                x[:, :, top:bottom, left:right] = x[::-1, :, top:bottom, left:right].copy()
        else:
            x[:] = x * lam + x[::-1] * (1.0 - lam)
        return lam

    def _mix_rows(self, x: np.ndarray, pairs: int, both: bool) -> np.ndarray:
        """Per element (``both`` False, ``pairs`` = N) or per pair (both rows of a pair mixed)."""
        n = len(x)
        lam_rows, use_cutmix = self._params_per_elem(pairs)
        original = x.copy()
        for i in range(pairs):
            j = n - i - 1
            lam = lam_rows[i]
            if lam == 1.0:
                continue
            if use_cutmix[i]:
                (top, bottom, left, right), lam = self._box_and_lam(x[i].shape, lam)
                if top < bottom and left < right:
                    x[i][:, top:bottom, left:right] = original[j][:, top:bottom, left:right]
                    if both:
                        x[j][:, top:bottom, left:right] = original[i][:, top:bottom, left:right]
                lam_rows[i] = lam
            else:
                x[i] = x[i] * lam + original[j] * (1 - lam)
                if both:
                    x[j] = x[j] * lam + original[i] * (1 - lam)
        return np.concatenate((lam_rows, lam_rows[::-1])) if both else lam_rows

    def __call__(self, batch: List[Sample]) -> List[Sample]:
        images, labels, rest = unpack(batch)
        if len(images) % 2:
            raise ValueError(f"MixupCutmixHybrid needs an even batch, got {len(images)} samples "
                             f"(use an even batch_size and drop_last: true)")
        images = images.copy()
        if self.mode == "elem":
            lam = self._mix_rows(images, len(images), both=False).reshape(-1, 1)
        elif self.mode == "pair":
            lam = self._mix_rows(images, len(images) // 2, both=True).reshape(-1, 1)
        else:
            lam = self._mix_batch(images)
        off = self.label_smoothing / self.num_classes
        on = 1.0 - self.label_smoothing + off
        targets = one_hot(labels, self.num_classes, on, off) * lam \
            + one_hot(labels[::-1], self.num_classes, on, off) * (1.0 - lam)
        return repack(images, targets.astype(np.float32), rest)


def build_batch_op(cfg: Any, key: str, class_num: Optional[int]) -> Any:
    """Build one ``batch_transform_ops`` entry; ``class_num`` goes to ops that take it (as in PaddleClas)."""
    name, kwargs = split_component(cfg, key)
    factory = BATCH_OPS.get(name, key)
    op_key = f"{key}.{name}"
    if "class_num" in kwargs:
        raise ConfigError(f"{op_key}.class_num", "is set from Arch.class_num", "remove it")
    extra: Dict[str, Any] = {}
    if _takes_class_num(factory):
        if isinstance(class_num, bool) or not isinstance(class_num, int) or class_num <= 0:
            raise ConfigError("Arch.class_num", f"{op_key} needs the number of classes, got {class_num!r}",
                              "set Arch.class_num (or Global.class_num)")
        extra["class_num"] = class_num
    op = BATCH_OPS.build({name: kwargs}, op_key, **extra)
    if class_num and getattr(op, "num_classes", class_num) != class_num:
        raise ConfigError(f"{op_key}.num_classes", f"is {op.num_classes} but Arch.class_num is {class_num}",
                          f"set num_classes: {class_num}")
    return op


def _takes_class_num(factory: Any) -> bool:
    return "class_num" in inspect.signature(factory.__init__).parameters
