"""GoogLeNet's training loss over its three outputs (PaddleClas ``GoogLeNetLoss``)."""
from __future__ import annotations

from typing import Optional, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..config.errors import ConfigError
from .celoss import logits_of
from .registry import LOSSES

AUX_WEIGHT = 0.3  # weight of each auxiliary classifier (Szegedy et al. 2014)


@LOSSES.register
class GoogLeNetLoss(nn.Layer):
    """``CE(logits) + 0.3 * CE(aux1) + 0.3 * CE(aux2)`` for a model returning ``[logits, aux1, aux2]``.

    Labels are class ids (``[N]`` or ``[N, 1]``). Like PaddleClas, label smoothing is refused:
    ``epsilon`` may only be None, <= 0 or >= 1 (ignored).
    """

    def __init__(self, epsilon: Optional[float] = None):
        super().__init__()
        if epsilon is not None and 0 < float(epsilon) < 1:
            # a plain ValueError: the registry turns it into a ConfigError naming the key path
            raise ConfigError("epsilon", f"GoogLeNetLoss does not support label smoothing, got {epsilon}", "remove epsilon")

    def forward(self, output: Sequence[paddle.Tensor], label: paddle.Tensor) -> paddle.Tensor:
        if not isinstance(output, (list, tuple)) or len(output) != 3:
            raise TypeError(f"GoogLeNetLoss needs the model's [logits, aux1, aux2] outputs, got {type(output).__name__}"
                            " (it is GoogLeNet's loss; use CELoss for other models)")
        label = label.reshape([-1, 1]).astype("int64")
        main, aux1, aux2 = (F.cross_entropy(logits_of(o), label).mean() for o in output)
        return main + AUX_WEIGHT * aux1 + AUX_WEIGHT * aux2
