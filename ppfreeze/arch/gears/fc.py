"""``FC``: one linear layer, used as an embedding neck or as a plain classifier head; ``Tanh``: a hashing neck."""
from __future__ import annotations

from typing import Any

import paddle
import paddle.nn as nn

from .param_attr import param_attr_from_config
from .registry import GEARS


@GEARS.register
class FC(nn.Layer):
    """``embedding_size`` -> ``class_num`` linear map (PaddleClas names: as a neck,
    ``class_num`` is the embedding width). State dict: ``fc.weight`` ``[in, out]``, ``fc.bias``.

    Args:
        embedding_size: input width.
        class_num: output width.
        weight_attr: PaddleClas's parameter-attribute mapping (default: Xavier-normal weights),
            see :func:`ppfreeze.arch.gears.param_attr.param_attr_from_config`.
        bias_attr: the same for the bias; ``false`` leaves the bias out (no ``fc.bias`` key).
    """
    needs_label = False

    def __init__(self, embedding_size: int, class_num: int, weight_attr: Any = None, bias_attr: Any = None):
        super().__init__()
        self.embedding_size = int(embedding_size)
        self.class_num = int(class_num)
        if weight_attr is None:
            weight_attr = {"initializer": {"name": "XavierNormal"}}
        self.fc = nn.Linear(self.embedding_size, self.class_num,
                            weight_attr=param_attr_from_config(weight_attr, "weight_attr"),
                            bias_attr=param_attr_from_config(bias_attr, "bias_attr"))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.fc(x)


@GEARS.register
class Tanh(nn.Layer):
    """``tanh`` as a neck (PaddleClas's DeepHash configs: hash codes in (-1, 1)); no parameters."""
    needs_label = False

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return paddle.tanh(x)
