"""Semi-supervised training: PaddleClas's ``Global.train_mode: fixmatch`` (Sohn et al. 2020, "FixMatch").

Each step takes a labeled batch from ``DataLoader.Train`` and an unlabeled one from
``DataLoader.UnLabelTrain``, whose dataset yields a weakly and a strongly augmented view of each
image (``Cifar10`` / ``Cifar100`` with ``transform_ops_weak`` / ``transform_ops_strong``). The model
runs once on ``[labeled, weak, strong]``; the loss is ``Loss.Train`` on the labeled logits plus the
``UnLabelLoss.Train`` cross entropy of the strong view's logits against the weak view's pseudo
labels, ``argmax softmax(logits_weak / T)``, counted only where that probability reaches
``SSL.threshold`` (averaged over the whole unlabeled batch, as FixMatch and PaddleClas do).

The ``SSL`` section: ``threshold`` (default 0.95) and the temperature under PaddleClas's key
``temperture`` (default 1; PaddleClas's FixMatch configs write ``tempture``, which PaddleClas does
not read either, so their temperature is 1). An epoch is ``Global.iter_per_epoch`` steps (required,
as in PaddleClas); both loaders are cycled as needed, the unlabeled one restarting its shuffle at
every epoch.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Iterator, List, Tuple

import paddle
import paddle.nn.functional as F

from ..config.errors import ConfigError, check_mapping
from ..loss import CELoss, logits_of
from ..utils.builder import split_component

logger = logging.getLogger("ppfreeze")

SSL_KEYS = ("threshold", "temperture", "tempture", "T")
TRAIN_MODES = ("fixmatch",)


class FixMatch:
    """The unlabeled half of a FixMatch step (see the module docstring).

    Args:
        loader: the ``DataLoader.UnLabelTrain`` loader (items ``(weak, strong, label)``).
        unlabeled_ce: the cross entropy of ``UnLabelLoss.Train``; ``weight`` and ``reduction`` its entry's.
        threshold: confidence a pseudo label needs; ``temperature`` divides the weak logits.
    """

    def __init__(self, loader: Any, unlabeled_ce: CELoss, weight: float = 1.0, reduction: str = "none",
                 threshold: float = 0.95, temperature: float = 1.0):
        if not 0 <= threshold <= 1 or temperature <= 0:
            raise ConfigError("SSL", f"threshold must be in [0, 1] and temperture > 0, got {threshold}, {temperature}")
        self.loader = loader
        self.unlabeled_ce, self.weight, self.reduction = unlabeled_ce, float(weight), reduction
        self.threshold, self.temperature = float(threshold), float(temperature)

    @classmethod
    def from_config(cls, config: Dict[str, Any], seed: int) -> "FixMatch":
        """Build from ``SSL``, ``UnLabelLoss`` and ``DataLoader.UnLabelTrain``; ``seed`` is the run's seed
        (the unlabeled loader's shuffle and augmentation derive from it)."""
        from ..data import build_dataloader
        ssl = config.get("SSL") or {}
        check_mapping(ssl, "SSL", SSL_KEYS, "{threshold: 0.95}")
        if "tempture" in ssl or "T" in ssl:
            logger.warning("SSL.%s is not read (PaddleClas's FixMatch reads SSL.temperture): the temperature "
                           "is %s", "tempture" if "tempture" in ssl else "T", ssl.get("temperture", 1))
        if not config["Global"].get("iter_per_epoch"):
            raise ConfigError("Global.iter_per_epoch", "FixMatch training needs it (steps per epoch; both loaders "
                                                       "are cycled)", "e.g. iter_per_epoch: 1024")
        unlabeled_ce, weight, reduction = _unlabeled_loss(config.get("UnLabelLoss"))
        loaders = config.get("DataLoader") or {}
        if "UnLabelTrain" not in loaders:
            raise ConfigError("DataLoader.UnLabelTrain", "missing: FixMatch trains on unlabeled images too",
                              "add a loader whose dataset yields weak and strong views (transform_ops_weak / "
                              "transform_ops_strong)")
        return cls(build_dataloader(loaders, "UnLabelTrain", seed=seed), unlabeled_ce, weight, reduction,
                   float(ssl.get("threshold", 0.95)), float(ssl.get("temperture", 1.0)))

    def batches(self, epoch: int, count: int) -> Iterator[Any]:
        """``count`` unlabeled batches for ``epoch`` (``(weak, strong, label)``; the label is unused)."""
        from ..data.loader import epoch_batches
        return epoch_batches(self.loader, epoch, count)

    def forward_and_loss(self, model_call, train_loss, images: paddle.Tensor, labels: paddle.Tensor,
                         unlabeled: List[paddle.Tensor]) -> Tuple[paddle.Tensor, Dict[str, paddle.Tensor]]:
        """Run ``model_call`` on ``[labeled, weak, strong]`` and return (labeled logits, loss dict)."""
        weak, strong = unlabeled[0], unlabeled[1]
        if len(unlabeled) < 3 or weak.shape != strong.shape:
            raise ConfigError("DataLoader.UnLabelTrain.dataset", "each unlabeled item must be (weak view, strong "
                                                                 "view, label) of one shape",
                              "set transform_ops_weak and transform_ops_strong, not transform_ops")
        n = images.shape[0]
        logits = logits_of(model_call(paddle.concat([images, weak, strong], axis=0)))
        logits_x = logits[:n]
        logits_weak, logits_strong = logits[n:].chunk(2)
        labeled = train_loss(logits_x, labels)
        probs = F.softmax(logits_weak.detach() / self.temperature, axis=-1)
        confident = (probs.max(axis=-1) >= self.threshold).astype(logits.dtype)
        per_sample = self.unlabeled_ce.per_sample(logits_strong, probs.argmax(axis=-1)).reshape([-1])
        if self.reduction == "none":
            unlabeled_loss = (per_sample * confident).mean()
        else:   # PaddleClas applies the mask to the reduced loss
            reduced = per_sample.sum() if self.reduction == "sum" else per_sample.mean()
            unlabeled_loss = (reduced * confident).mean()
        losses = {f"{k}_label": v for k, v in labeled.items() if k != "loss"}
        losses["CELoss_unlabel"] = unlabeled_loss * self.weight
        losses["loss"] = labeled["loss"] + losses["CELoss_unlabel"]
        return logits_x, losses


def _unlabeled_loss(section: Any) -> Tuple[CELoss, float, str]:
    """``UnLabelLoss.Train``: one ``CELoss`` (PaddleClas's FixMatch uses its ``CELoss`` entry only)."""
    key = "UnLabelLoss.Train"
    entries = (section or {}).get("Train") if isinstance(section, dict) else None
    if not isinstance(entries, list) or len(entries) != 1:
        raise ConfigError(key, f"expected one loss, such as [{{CELoss: {{weight: 1.0, reduction: none}}}}], got "
                               f"{entries!r}")
    name, kwargs = split_component(entries[0], f"{key}.0")
    if name != "CELoss":
        raise ConfigError(f"{key}.0", f"FixMatch's unlabeled loss is the cross entropy to the pseudo labels, got "
                                      f"{name}", "use CELoss")
    kwargs = dict(kwargs)
    weight = float(kwargs.pop("weight", 1.0))
    reduction = kwargs.pop("reduction", "mean")
    if reduction not in ("none", "mean", "sum"):
        raise ConfigError(f"{key}.0.CELoss.reduction", f"expected none, mean or sum, got {reduction!r}")
    try:
        return CELoss(**kwargs), weight, reduction
    except TypeError as e:
        raise ConfigError(f"{key}.0.CELoss", str(e)) from None
