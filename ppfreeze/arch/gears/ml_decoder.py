"""``MLDecoder`` (Ridnik et al. 2021, "ML-Decoder: Scalable and Versatile Classification Head"):
an attention classification head that replaces a backbone's pooling and classifier.

PaddleClas attaches it with ``Arch.use_ml_decoder: true`` and a top-level ``MLDecoder`` section:
the backbone's ``remove_layers`` (default ``avg_pool``, ``flatten``) become identities, so the
head sees the feature map, and ``replace_layer`` (default ``fc``) becomes the decoder
(:func:`add_ml_decoder_head`). State-dict keys are PaddleClas's (``fc.input_proj.weight``,
``fc.decoder.layers.0.cross_attn.q_proj.weight``, ``fc.group_conv.weight``...).

The decoder: class queries (a frozen random embedding by default) cross-attend to the projected
feature map; each query's embedding is mapped to ``ceil(class_num / query_num)`` logits by a
grouped 1x1 convolution ("group fully connected"), the first ``class_num`` are kept.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...config.errors import ConfigError, did_you_mean
from .registry import GEARS

_DEFAULT_REMOVED = ("avg_pool", "flatten")
_DEFAULT_REPLACED = "fc"


class _DecoderLayer(nn.TransformerDecoderLayer):
    """Paddle's post-norm decoder layer; without self-attention (ML-Decoder's choice) the layer
    holds no ``self_attn`` parameters and, as in PaddleClas, keeps that block's residual and
    ``norm1`` around an identity: ``norm1(q + dropout1(q))``."""

    def __init__(self, *args: Any, self_attention: bool = True, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.has_self_attention = self_attention
        if not self_attention:
            del self.self_attn

    def forward(self, tgt: paddle.Tensor, memory: paddle.Tensor) -> paddle.Tensor:
        attended = self.self_attn(tgt, tgt, tgt, None, None) if self.has_self_attention else tgt
        tgt = self.norm1(tgt + self.dropout1(attended))
        tgt = self.norm2(tgt + self.dropout2(self.cross_attn(tgt, memory, memory, None, None)))
        return self.norm3(tgt + self.dropout3(self.linear2(self.dropout(self.activation(self.linear1(tgt))))))


class _Decoder(nn.Layer):
    """A stack of decoder layers (the key layout of ``paddle.nn.TransformerDecoder``: ``layers.<i>``)."""

    def __init__(self, layers: list):
        super().__init__()
        self.layers = nn.LayerList(layers)

    def forward(self, tgt: paddle.Tensor, memory: paddle.Tensor) -> paddle.Tensor:
        for layer in self.layers:
            tgt = layer(tgt, memory)
        return tgt


@GEARS.register
class MLDecoder(nn.Layer):
    """ML-Decoder classification head (PaddleClas ``MLDecoder``, same arguments and keys).

    Args:
        class_num: number of classes (logits).
        in_channels: channels of the feature map it receives.
        query_num: class queries, clipped to ``[1, class_num]``.
        embed_dim: decoder width; ``num_heads`` attention heads; ``mlp_hidden_dim`` feed-forward width.
        depth: decoder layers. With ``remove_self_attn`` the first has no self-attention; later
            layers keep it (PaddleClas builds them from Paddle's layer config, which has one).
        dropout: dropout of attention, feed-forward and residual branches.
        activation: feed-forward activation (``relu``, ``gelu``).
        freeze_query_embed: the query embedding stays at its random initialisation (not trained).
        remove_self_attn: see ``depth``.
    """
    needs_label = False

    def __init__(self, class_num: int = 80, in_channels: int = 2048, query_num: int = 80, embed_dim: int = 768,
                 depth: int = 1, num_heads: int = 8, mlp_hidden_dim: int = 2048, dropout: float = 0.1,
                 activation: str = "relu", freeze_query_embed: bool = True, remove_self_attn: bool = True):
        super().__init__()
        for name, value in (("class_num", class_num), ("in_channels", in_channels), ("embed_dim", embed_dim),
                            ("depth", depth), ("num_heads", num_heads)):
            if value < 1:
                raise ConfigError(name, f"must be >= 1, got {value}")
        if embed_dim % num_heads:
            raise ConfigError("num_heads", f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.class_num = int(class_num)
        self.in_channels = int(in_channels)
        query_num = min(max(int(query_num), 1), self.class_num)
        self.input_proj = nn.Conv2D(self.in_channels, embed_dim, kernel_size=1)
        self.query_pos_embed = nn.Embedding(query_num, embed_dim,
                                            weight_attr=paddle.ParamAttr(initializer=nn.initializer.Normal()))
        self.query_pos_embed.weight.stop_gradient = bool(freeze_query_embed)
        layer_args = dict(d_model=embed_dim, nhead=num_heads, dim_feedforward=mlp_hidden_dim, dropout=dropout,
                          activation=activation, attn_dropout=dropout, act_dropout=dropout)
        self.decoder = _Decoder([_DecoderLayer(**layer_args, self_attention=not (remove_self_attn and i == 0))
                                 for i in range(depth)])
        outputs_per_query = math.ceil(self.class_num / query_num)
        self.group_conv = nn.Conv2D(query_num * embed_dim, query_num * outputs_per_query, kernel_size=1,
                                    groups=query_num,
                                    weight_attr=paddle.ParamAttr(initializer=nn.initializer.XavierNormal()),
                                    bias_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(0.0)))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._as_feature_map(x)
        memory = F.relu(self.input_proj(x)).flatten(2).transpose([0, 2, 1])        # [N, H*W, D]
        queries = self.query_pos_embed.weight.unsqueeze(0).tile([x.shape[0], 1, 1])   # [N, Q, D]
        embedded = self.decoder(queries, memory)
        logits = self.group_conv(embedded.flatten(1).unsqueeze(-1).unsqueeze(-1))      # one group per query
        return logits.flatten(1)[:, :self.class_num]

    def _as_feature_map(self, x: paddle.Tensor) -> paddle.Tensor:
        """``[N, C, H, W]``; ``[N, C * L]`` and ``[N, C, L]`` inputs are read as ``L`` positions (PaddleClas)."""
        if x.ndim == 2 and x.shape[1] % self.in_channels == 0:
            return x.reshape([x.shape[0], self.in_channels, -1, 1])
        if x.ndim == 3 and x.shape[1] == self.in_channels:
            return x.unsqueeze(-1)
        if x.ndim == 4 and x.shape[1] == self.in_channels:
            return x
        raise ValueError(f"MLDecoder expects {self.in_channels} input channels (MLDecoder.in_channels), "
                         f"got an input of shape {x.shape}")


def add_ml_decoder_head(model: nn.Layer, cfg: Optional[Dict[str, Any]], key: str = "MLDecoder") -> nn.Layer:
    """Put an :class:`MLDecoder` in ``model`` as PaddleClas does for ``Arch.use_ml_decoder: true``.

    ``cfg`` is the ``MLDecoder`` section: the head's arguments plus ``remove_layers`` (sublayers made
    identities, default ``[avg_pool, flatten]``) and ``replace_layer`` (the sublayer the head
    replaces, default ``fc``); ``class_num`` defaults to the model's.
    """
    cfg = dict(cfg or {})
    if not isinstance(cfg, dict):
        raise ConfigError(key, f"expected a mapping of MLDecoder arguments, got {cfg!r}")
    removed = cfg.pop("remove_layers", list(_DEFAULT_REMOVED))
    replaced = cfg.pop("replace_layer", _DEFAULT_REPLACED)
    if "class_num" not in cfg:
        if getattr(model, "class_num", None) is None:
            raise ConfigError(f"{key}.class_num", "missing, and the model has no class_num to take it from")
        cfg["class_num"] = model.class_num
    children = dict(model.named_children())
    for name in list(removed) + [replaced]:
        if name not in children:
            where = "remove_layers" if name != replaced else "replace_layer"
            raise ConfigError(f"{key}.{where}", f"{type(model).__name__} has no sublayer {name!r}",
                              f"its sublayers: {', '.join(children)}.{did_you_mean(name, children)}")
    head = GEARS.build({"MLDecoder": cfg}, key)
    width = getattr(model, "num_features", None)
    if width and head.in_channels != width:  # else a shape error at the first forward
        raise ConfigError(f"{key}.in_channels", f"is {head.in_channels}, but {type(model).__name__} gives "
                          f"{width}-channel features", f"set {key}.in_channels: {width}")
    for name in removed:
        model._sub_layers[name] = nn.Identity()
    model._sub_layers[replaced] = head
    return model
