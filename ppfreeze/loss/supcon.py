"""``SupConLoss``: supervised contrastive loss (Khosla et al. 2020, "Supervised Contrastive Learning").

The batch holds ``views`` consecutive images of each identity, as a P x K sampler with
``K = views`` (``PKSampler.sample_per_id``) lays it out; PaddleClas's vehicle re-id configs pair
it with that sampler. Every view is an anchor (``contrast_mode: all``; ``one``: the first view
only); its positives are the other views of identities with its label, its denominator every
other view in the batch. The loss is ``-(temperature / base_temperature)`` times the mean
log-probability of the positives, averaged over anchors.
"""
from __future__ import annotations

from typing import Dict, Union

import paddle
import paddle.nn as nn

from ..config.errors import ConfigError
from .registry import LOSSES

ModelOutput = Union[paddle.Tensor, Dict[str, paddle.Tensor]]
CONTRAST_MODES = ("all", "one")


@LOSSES.register
class SupConLoss(nn.Layer):
    """Supervised contrastive loss on ``output["features"]`` (PaddleClas ``SupConLoss``).

    Args:
        views: images per identity, consecutive in the batch (the sampler's images per id).
        temperature: softmax temperature of the similarities.
        contrast_mode: ``all`` (every view is an anchor) or ``one`` (the first view of each identity).
        base_temperature: the loss is scaled by ``temperature / base_temperature``.
        normalize_feature: L2-normalise the features first (``x / (|x| + 1e-12)``).
    """

    def __init__(self, views: int = 16, temperature: float = 0.07, contrast_mode: str = "all",
                 base_temperature: float = 0.07, normalize_feature: bool = True):
        super().__init__()
        if views < 1:
            raise ConfigError("views", f"must be >= 1, got {views}")
        if contrast_mode not in CONTRAST_MODES:
            raise ConfigError("contrast_mode", f"expected all or one, got {contrast_mode!r}")
        if not temperature > 0 or not base_temperature > 0:
            raise ConfigError("temperature", f"temperatures must be > 0, got {temperature}, {base_temperature}")
        self.views = int(views)
        self.temperature = float(temperature)
        self.base_temperature = float(base_temperature)
        self.contrast_mode = contrast_mode
        self.normalize_feature = bool(normalize_feature)

    def forward(self, output: ModelOutput, label: paddle.Tensor) -> paddle.Tensor:
        features = output["features"] if isinstance(output, dict) else output
        n = features.shape[0]
        if n % self.views:
            raise ConfigError("views", f"a batch of {n} images is not made of groups of {self.views} views of one "
                                       "identity", "use a P x K sampler (PKSampler) with sample_per_id equal to "
                                                   "views and a batch_size divisible by it (drop_last: true)")
        features = features.reshape([n, -1])
        if self.normalize_feature:
            features = features / (features.norm(p=2, axis=-1, keepdim=True) + 1e-12)
        ids = n // self.views
        grouped = features.reshape([ids, self.views, -1])
        id_labels = label.reshape([ids, self.views])[:, 0]
        same_id = (id_labels.reshape([-1, 1]) == id_labels.reshape([1, -1])).astype(features.dtype)
        contrast = grouped.transpose([1, 0, 2]).reshape([self.views * ids, -1])  # view-major, as in the paper
        anchors, anchor_views = (contrast, self.views) if self.contrast_mode == "all" else (grouped[:, 0], 1)
        logits = paddle.matmul(anchors, contrast, transpose_y=True) / self.temperature
        logits = logits - logits.max(axis=1, keepdim=True).detach()   # numerical stability only
        rows = anchor_views * ids
        not_self = 1.0 - paddle.eye(rows, self.views * ids, dtype=features.dtype)   # anchor i is contrast i
        positives = paddle.tile(same_id, [anchor_views, self.views]) * not_self
        log_prob = logits - paddle.log((paddle.exp(logits) * not_self).sum(axis=1, keepdim=True))
        mean_log_prob_pos = (positives * log_prob).sum(axis=1) / positives.sum(axis=1)
        return -(self.temperature / self.base_temperature) * mean_log_prob_pos.mean()
