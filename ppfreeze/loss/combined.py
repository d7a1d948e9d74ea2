"""Weighted sum of the losses listed under ``Loss.Train`` / ``Loss.Eval``.

PaddleClas writes each entry as ``{CELoss: {weight: 1.0, epsilon: 0.1}}``; ``weight`` belongs
to the combination, every other key to the loss.  A registered loss is a callable
``loss(output, label) -> scalar Tensor``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import paddle
import paddle.nn as nn

from ..config.errors import ConfigError
from ..config.expr import to_number
from ..utils.builder import split_component
from .registry import LOSSES


class CombinedLoss(nn.Layer):
    """Calls every loss and returns ``{name: weight * value, ..., "loss": sum}``.

    Entries are reported already weighted, so ``loss`` is the sum of the other entries.
    A loss listed twice gets a suffix (``CELoss``, ``CELoss_1``).
    """

    def __init__(self, named_losses: List[Tuple[str, nn.Layer]], weights: List[float]):
        super().__init__()
        self.names = [name for name, _ in named_losses]
        self.weights = list(weights)
        # LayerList so the parameters of losses that have some (DistillationPairLoss) reach the
        # optimizer and the checkpoint; named loss_func as in PaddleClas, so their state-dict keys
        # (loss_func.<i>.<...>) are the ones PaddleClas's checkpoints hold.
        self.loss_func = nn.LayerList([loss for _, loss in named_losses])

    def forward(self, output: Any, label: paddle.Tensor) -> Dict[str, paddle.Tensor]:
        result: Dict[str, paddle.Tensor] = {}
        for name, weight, loss in zip(self.names, self.weights, self.loss_func):
            result[name] = loss(output, label) * weight
        result["loss"] = paddle.add_n(list(result.values()))
        return result


def build_loss(loss_cfgs: Optional[List[Any]], key: str,
               required: Optional[bool] = None) -> Optional[CombinedLoss]:
    """Build a :class:`CombinedLoss` from a PaddleClas loss list.

    Args:
        loss_cfgs: list of ``{LossName: {weight: w, **kwargs}}`` (or ``{name: LossName, ...}``).
        key: config path for error messages, e.g. ``"Loss.Train"``.
        required: whether an empty list is an error.  ``None`` means required unless ``key``
            ends with ``Eval`` (evaluation may run without a loss).

    Returns:
        The combined loss, or ``None`` for an empty, not required list.
    """
    if required is None:
        required = not key.endswith("Eval")
    if not loss_cfgs:
        if required:
            raise ConfigError(key, "no loss configured", "add e.g. '- CELoss: {weight: 1.0}'")
        return None
    if not isinstance(loss_cfgs, list):
        raise ConfigError(key, f"expected a list of losses, got {type(loss_cfgs).__name__} {loss_cfgs!r}",
                          "write each loss as a list item: '- CELoss: {weight: 1.0}'")
    named, weights = [], []
    for index, cfg in enumerate(loss_cfgs):
        item_key = f"{key}.{index}"  # same path syntax as '-o Loss.Train.0.CELoss.epsilon=0.1'
        name, kwargs = split_component(cfg, item_key)
        LOSSES.get(name, item_key)  # unknown names fail here, naming the list item
        weight = _pop_weight(kwargs, f"{item_key}.{name}.weight")
        loss = LOSSES.build({name: kwargs}, f"{item_key}.{name}")
        named.append((_unique(name, [n for n, _ in named]), loss))
        weights.append(weight)
    return CombinedLoss(named, weights)


def _pop_weight(kwargs: Dict[str, Any], key: str) -> float:
    weight = float(to_number(kwargs.pop("weight", 1.0), key))
    if weight < 0:
        raise ConfigError(key, f"loss weight must be >= 0, got {weight}")
    return weight


def _unique(name: str, taken: List[str]) -> str:
    candidate, n = name, 0
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    return candidate
