"""Semi-supervised training: PaddleClas's ``Global.train_mode: fixmatch`` (Sohn et al. 2020, "FixMatch")
and ``fixmatch_ccssl`` (Yang et al. 2022, "Class-Aware Contrastive Semi-Supervised Learning").

Each step takes a labeled batch from ``DataLoader.Train`` and an unlabeled one from
``DataLoader.UnLabelTrain``, whose dataset yields augmented views of each image (``Cifar10`` /
``Cifar100`` with ``transform_ops_weak`` / ``transform_ops_strong`` [/ ``transform_ops_strong2``]).
The model runs once on ``[labeled, weak, strong(, strong2)]``. Pseudo labels are
``argmax softmax(logits_weak / T)``; a pseudo label counts where its probability reaches
``SSL.threshold``. The loss is ``Loss.Train`` on the labeled logits plus ``UnLabelLoss.Train``:

- ``fixmatch``: one ``CELoss``: the cross entropy of the strong view's logits against the pseudo
  labels, masked by confidence and averaged over the whole unlabeled batch;
- ``fixmatch_ccssl``: ``CCSSLCELoss`` (the same masked cross entropy, first strong view) and
  ``SoftSupConLoss``, a supervised contrastive loss between the two strong views' ``features`` in
  which two images are positives when their pseudo labels agree, weighted by the product of their
  confidences.

The ``SSL`` section: ``threshold`` (default 0.95) and the temperature, under PaddleClas's keys:
``temperture`` for FixMatch (its configs write ``tempture``, which PaddleClas does not read either,
so their temperature is 1) and ``T`` for CCSSL. An epoch is ``Global.iter_per_epoch`` steps
(required, as in PaddleClas); both loaders are cycled as needed, the unlabeled one restarting its
shuffle at every epoch.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Iterator, List, Tuple

import paddle
import paddle.nn.functional as F

from ..config.errors import ConfigError, check_mapping
from ..loss import CELoss, logits_of
from ..utils.builder import split_component

logger = logging.getLogger("ppfreeze")

SSL_KEYS = ("threshold", "temperture", "tempture", "T")
TRAIN_MODES = ("fixmatch", "fixmatch_ccssl")
LossDict = Dict[str, paddle.Tensor]


class FixMatch:
    """The unlabeled half of a FixMatch step (see the module docstring).

    Args:
        loader: the ``DataLoader.UnLabelTrain`` loader (items ``(weak, strong, label)``).
        unlabeled_ce: the cross entropy of ``UnLabelLoss.Train``; ``weight`` and ``reduction`` its entry's.
        threshold: confidence a pseudo label needs; ``temperature`` divides the weak logits.
    """

    views = 2                    # weak + strong
    temperature_key = "temperture"

    def __init__(self, loader: Any, unlabeled_ce: CELoss, weight: float = 1.0, reduction: str = "none",
                 threshold: float = 0.95, temperature: float = 1.0):
        if not 0 <= threshold <= 1 or temperature <= 0:
            raise ConfigError("SSL", f"threshold must be in [0, 1] and the temperature > 0, got {threshold}, "
                                     f"{temperature}")
        self.loader = loader
        self.unlabeled_ce, self.weight, self.reduction = unlabeled_ce, float(weight), reduction
        self.threshold, self.temperature = float(threshold), float(temperature)

    @classmethod
    def from_config(cls, config: Dict[str, Any], seed: int) -> "FixMatch":
        """Build from ``SSL``, ``UnLabelLoss`` and ``DataLoader.UnLabelTrain``; ``seed`` is the run's seed
        (the unlabeled loader's shuffle and augmentation derive from it)."""
        from ..data import build_dataloader
        threshold, temperature = cls._ssl(config.get("SSL") or {})
        if not config["Global"].get("iter_per_epoch"):
            raise ConfigError("Global.iter_per_epoch", "semi-supervised training needs it (steps per epoch; both "
                                                       "loaders are cycled)", "e.g. iter_per_epoch: 1024")
        losses = cls._unlabeled_losses(config.get("UnLabelLoss"))
        loaders = config.get("DataLoader") or {}
        if "UnLabelTrain" not in loaders:
            raise ConfigError("DataLoader.UnLabelTrain", "missing: semi-supervised training needs unlabeled images",
                              "add a loader whose dataset yields weak and strong views (transform_ops_weak / "
                              "transform_ops_strong)")
        return cls(build_dataloader(loaders, "UnLabelTrain", seed=seed), *losses, threshold=threshold,
                   temperature=temperature)

    @classmethod
    def _ssl(cls, ssl: Dict[str, Any]) -> Tuple[float, float]:
        check_mapping(ssl, "SSL", SSL_KEYS, "{threshold: 0.95}")
        for ignored in (k for k in ("temperture", "tempture", "T") if k in ssl and k != cls.temperature_key):
            logger.warning("SSL.%s is not read (PaddleClas reads SSL.%s here): the temperature is %s", ignored,
                           cls.temperature_key, ssl.get(cls.temperature_key, 1))
        return float(ssl.get("threshold", 0.95)), float(ssl.get(cls.temperature_key, 1.0))

    @staticmethod
    def _unlabeled_losses(section: Any) -> Tuple[CELoss, float, str]:
        """``UnLabelLoss.Train``: one ``CELoss`` (PaddleClas's FixMatch uses its ``CELoss`` entry only)."""
        (name, kwargs), = _entries(section, 1, "[{CELoss: {weight: 1.0, reduction: none}}]")
        if name != "CELoss":
            raise ConfigError("UnLabelLoss.Train.0", f"FixMatch's unlabeled loss is the cross entropy to the pseudo "
                                                     f"labels, got {name}", "use CELoss")
        weight = float(kwargs.pop("weight", 1.0))
        reduction = kwargs.pop("reduction", "mean")
        if reduction not in ("none", "mean", "sum"):
            raise ConfigError("UnLabelLoss.Train.0.CELoss.reduction", f"expected none, mean or sum, got {reduction!r}")
        try:
            return CELoss(**kwargs), weight, reduction
        except TypeError as e:
            raise ConfigError("UnLabelLoss.Train.0.CELoss", str(e)) from None

    def batches(self, epoch: int, count: int) -> Iterator[Any]:
        """``count`` unlabeled batches for ``epoch`` (``(weak, strong[, strong2], label)``; labels unused)."""
        from ..data.loader import epoch_batches
        return epoch_batches(self.loader, epoch, count)

    def forward_and_loss(self, model_call: Callable, train_loss: Callable, images: paddle.Tensor,
                         labels: paddle.Tensor, unlabeled: List[paddle.Tensor]) -> Tuple[paddle.Tensor, LossDict]:
        """Run ``model_call`` on ``[labeled, views...]`` and return (labeled logits, loss dict)."""
        views = list(unlabeled[:self.views])
        if len(unlabeled) < self.views + 1 or any(v.shape != views[0].shape for v in views):
            raise ConfigError("DataLoader.UnLabelTrain.dataset", f"each unlabeled item must be {self.views} views of "
                                                                 "one shape and a label",
                              "set transform_ops_weak and transform_ops_strong (and transform_ops_strong2 for "
                              "CCSSL), not transform_ops")
        n = images.shape[0]
        output = model_call(paddle.concat([images] + views, axis=0))
        logits = logits_of(output)
        logits_x = logits[:n]
        labeled = train_loss(logits_x, labels)
        unlabeled_losses = self.unlabeled_losses(output, n)
        losses = {f"{k}_label": v for k, v in labeled.items() if k != "loss"}
        losses.update(unlabeled_losses)
        losses["loss"] = labeled["loss"] + paddle.add_n(list(unlabeled_losses.values()))
        return logits_x, losses

    def pseudo_labels(self, logits_weak: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor, paddle.Tensor]:
        """(pseudo labels, their probabilities, confidence mask 0/1) from the weak view's logits."""
        probs = F.softmax(logits_weak.detach() / self.temperature, axis=-1)
        max_probs = probs.max(axis=-1)
        return probs.argmax(axis=-1), max_probs, (max_probs >= self.threshold).astype(logits_weak.dtype)

    def unlabeled_losses(self, output: Any, n: int) -> LossDict:
        """The weighted unlabeled loss terms of the model ``output`` (labeled rows first, ``n`` of them)."""
        logits_weak, logits_strong = logits_of(output)[n:].chunk(2)
        pseudo, _, confident = self.pseudo_labels(logits_weak)
        per_sample = self.unlabeled_ce.per_sample(logits_strong, pseudo).reshape([-1])
        if self.reduction == "none":
            loss = (per_sample * confident).mean()
        else:   # PaddleClas applies the mask to the reduced loss
            loss = ((per_sample.sum() if self.reduction == "sum" else per_sample.mean()) * confident).mean()
        return {"CELoss_unlabel": loss * self.weight}


class FixMatchCCSSL(FixMatch):
    """The unlabeled half of a CCSSL step (see the module docstring): ``features`` are needed, so the
    model must return a dict with ``logits`` and ``features`` (a RecModel)."""

    views = 3                    # weak + strong + strong2
    temperature_key = "T"
    UNLABELED_LOSSES = ("CCSSLCELoss", "SoftSupConLoss")

    def __init__(self, loader: Any, weights: Dict[str, float], supcon: Dict[str, float], threshold: float = 0.95,
                 temperature: float = 1.0):
        super().__init__(loader, CELoss(), 1.0, "none", threshold, temperature)
        self.weights, self.supcon = weights, supcon

    @classmethod
    def _unlabeled_losses(cls, section: Any) -> Tuple[Dict[str, float], Dict[str, float]]:
        weights, supcon = {}, {"temperature": 0.07, "base_temperature": 0.07}
        for index, (name, kwargs) in enumerate(_entries(section, None, "[{CCSSLCELoss: {weight: 1.0}}, "
                                                                       "{SoftSupConLoss: {weight: 1.0}}]")):
            key = f"UnLabelLoss.Train.{index}.{name}"
            if name not in cls.UNLABELED_LOSSES or name in weights:
                raise ConfigError(key, f"CCSSL's unlabeled losses are {', '.join(cls.UNLABELED_LOSSES)} (once each), "
                                       f"got {name}")
            weights[name] = float(kwargs.pop("weight", 1.0))
            known = ("temperature", "base_temperature", "contrast_mode") if name == "SoftSupConLoss" else ()
            for arg in kwargs:
                if arg not in known:
                    raise ConfigError(f"{key}.{arg}", f"'{name}' has no argument '{arg}'")
            if kwargs.get("contrast_mode", "all") != "all":
                raise ConfigError(f"{key}.contrast_mode", "only 'all' (PaddleClas's SoftSupConLoss implements no other)")
            supcon.update({k: float(v) for k, v in kwargs.items() if k != "contrast_mode"})
        return weights, supcon

    def unlabeled_losses(self, output: Any, n: int) -> LossDict:
        if not isinstance(output, dict) or "features" not in output:
            raise ConfigError("Arch", "CCSSL needs a model output with 'logits' and 'features'",
                              "use Arch.name: RecModel with a Neck (PaddleClas's configs: FRFNNeck)")
        logits_weak, logits_strong, _ = logits_of(output)[n:].chunk(3)
        _, feats_strong, feats_strong2 = output["features"][n:].chunk(3)
        pseudo, max_probs, confident = self.pseudo_labels(logits_weak)
        losses = {}
        if "CCSSLCELoss" in self.weights:
            ce = F.cross_entropy(logits_strong, pseudo, reduction="none").reshape([-1])
            losses["CCSSLCELoss"] = (ce * confident).mean() * self.weights["CCSSLCELoss"]
        if "SoftSupConLoss" in self.weights:
            losses["SoftSupConLoss"] = soft_supcon_loss(feats_strong, feats_strong2, pseudo, max_probs,
                                                        **self.supcon) * self.weights["SoftSupConLoss"]
        return losses


def soft_supcon_loss(view1: paddle.Tensor, view2: paddle.Tensor, pseudo: paddle.Tensor, confidence: paddle.Tensor,
                     temperature: float = 0.07, base_temperature: float = 0.07) -> paddle.Tensor:
    """CCSSL's supervised contrastive loss of two views ``[N, D]``: every view is an anchor; its
    positives are the other views whose pseudo label matches, weighted by ``confidence_i * confidence_j``;
    its denominator every other view. ``-(temperature / base_temperature)`` times the weighted mean
    log-probability of the positives, averaged over anchors."""
    n = view1.shape[0]
    same = (pseudo.reshape([-1, 1]) == pseudo.reshape([1, -1])).astype(view1.dtype)
    weight = same * paddle.matmul(confidence.reshape([-1, 1]), confidence.reshape([1, -1]))
    contrast = paddle.concat([view1, view2], axis=0)
    logits = paddle.matmul(contrast, contrast, transpose_y=True) / temperature
    logits = logits - logits.max(axis=1, keepdim=True).detach()
    not_self = 1.0 - paddle.eye(2 * n, dtype=view1.dtype)
    positives = paddle.tile(weight, [2, 2]) * not_self
    log_prob = logits - paddle.log((paddle.exp(logits) * not_self).sum(axis=1, keepdim=True))
    mean_log_prob_pos = (positives * log_prob).sum(axis=1) / positives.sum(axis=1)
    return -(temperature / base_temperature) * mean_log_prob_pos.mean()


def build_semi_supervised(config: Dict[str, Any], seed: int) -> FixMatch:
    """The trainer part that ``Global.train_mode`` (fixmatch / fixmatch_ccssl) selects."""
    mode = config["Global"]["train_mode"]
    return {"fixmatch": FixMatch, "fixmatch_ccssl": FixMatchCCSSL}[mode].from_config(config, seed)


def _entries(section: Any, count: Any, example: str) -> List[Tuple[str, Dict[str, Any]]]:
    """``UnLabelLoss.Train`` as ``(name, kwargs)`` pairs (``count`` of them when given)."""
    key = "UnLabelLoss.Train"
    entries = section.get("Train") if isinstance(section, dict) else None
    if not isinstance(entries, list) or not entries or (count is not None and len(entries) != count):
        raise ConfigError(key, f"expected {example}, got {entries!r}")
    return [(name, dict(kwargs)) for name, kwargs in
            (split_component(entry, f"{key}.{i}") for i, entry in enumerate(entries))]
