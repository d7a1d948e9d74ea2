"""Cross entropy against soft targets (PaddleClas ``SoftTargetCrossEntropy``, used with mixup / cutmix)."""
from __future__ import annotations

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .celoss import ModelOutput, logits_of
from .registry import LOSSES


@LOSSES.register
class SoftTargetCrossEntropy(nn.Layer):
    """Mean over samples of ``-sum_c target_c * log_softmax(logits)_c``.

    Targets are float ``[N, C]`` (the soft labels of MixupCutmixHybrid, MixupOperator, ...);
    class ids ``[N]`` / ``[N, 1]`` (e.g. a batch OpSampler left unmixed) count as one-hot.
    """

    def __init__(self):
        super().__init__()

    def forward(self, output: ModelOutput, target: paddle.Tensor) -> paddle.Tensor:
        logits = logits_of(output)
        num_classes = logits.shape[-1]
        if target.dtype in (paddle.int32, paddle.int64):
            target = F.one_hot(target.reshape([-1]).astype("int64"), num_classes)
        elif target.ndim != 2 or target.shape[-1] != num_classes:
            raise ValueError(f"SoftTargetCrossEntropy: targets of shape {list(target.shape)} do not match "
                             f"{num_classes} classes; expected [N, {num_classes}]")
        return (-target.astype("float32") * F.log_softmax(logits, axis=-1)).sum(axis=-1).mean()
