"""``FC``: one linear layer, used as an embedding neck or as a plain classifier head."""
from __future__ import annotations

import paddle
import paddle.nn as nn

from .registry import GEARS


@GEARS.register
class FC(nn.Layer):
    """``embedding_size`` -> ``class_num`` linear map (PaddleClas names: as a neck,
    ``class_num`` is the embedding width). State dict: ``fc.weight`` ``[in, out]``, ``fc.bias``.
    """
    needs_label = False

    def __init__(self, embedding_size: int, class_num: int):
        super().__init__()
        self.embedding_size = int(embedding_size)
        self.class_num = int(class_num)
        self.fc = nn.Linear(self.embedding_size, self.class_num,
                            weight_attr=paddle.ParamAttr(initializer=nn.initializer.XavierNormal()))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.fc(x)
