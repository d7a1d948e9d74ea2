"""``FC``: one linear layer, used as an embedding neck or as a plain classifier head; ``Tanh``: a hashing
neck; ``FRFNNeck``: CCSSL's projection neck."""
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


@GEARS.register
class FRFNNeck(nn.Layer):
    """CCSSL's projection neck: ``fc1 -> LeakyReLU(0.1) -> fc2``, then L2-normalised (no epsilon, as
    PaddleClas). State dict: ``fc1.{weight,bias}`` ``[num_features, num_features]``, ``fc2`` to ``low_dim``.

    Args:
        num_features: input width.
        low_dim: output (embedding) width.
    """
    needs_label = False

    def __init__(self, num_features: int, low_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(int(num_features), int(num_features))
        self.relu_mlp = nn.LeakyReLU(negative_slope=0.1)
        self.fc2 = nn.Linear(int(num_features), int(low_dim))
        self.num_features = int(low_dim)   # the width of what the neck outputs (the model contract's meaning)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.fc2(self.relu_mlp(self.fc1(x)))
        return x / x.pow(2).sum(1, keepdim=True).pow(0.5)
