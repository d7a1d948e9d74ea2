"""``BNNeck`` (Luo et al. 2019, "Bag of Tricks for person re-ID"): BatchNorm on the embedding.

The BN puts features on a sphere-friendly scale for ID (softmax) losses while the
features before it serve metric losses. PaddleClas configs often freeze the BN bias with
``bias_attr: {learning_rate: 1.0e-20}``; ``weight_attr`` / ``bias_attr`` take that form.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import paddle
import paddle.nn as nn

from .param_attr import param_attr_from_config
from .registry import GEARS


@GEARS.register
class BNNeck(nn.Layer):
    """Flatten, then ``BatchNorm1D(num_features)``. State dict: ``feat_bn.{weight,bias,_mean,_variance}``.

    Args:
        num_features: embedding width.
        weight_attr, bias_attr: optional ParamAttr mappings (see :func:`param_attr_from_config`).
        use_global_stats: fix the BN statistics (None: train-mode statistics while training).
    """
    needs_label = False

    def __init__(self, num_features: int, weight_attr: Optional[Dict[str, Any]] = None,
                 bias_attr: Optional[Dict[str, Any]] = None, use_global_stats: Optional[bool] = None):
        super().__init__()
        if weight_attr is None:
            weight_attr = {"initializer": {"name": "Constant", "value": 1.0}}
        self.flatten = nn.Flatten()
        self.num_features = int(num_features)
        self.feat_bn = nn.BatchNorm1D(int(num_features), momentum=0.9, epsilon=1e-5,
                                      weight_attr=param_attr_from_config(weight_attr, "weight_attr"),
                                      bias_attr=param_attr_from_config(bias_attr, "bias_attr"),
                                      use_global_stats=use_global_stats)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.feat_bn(self.flatten(x))
