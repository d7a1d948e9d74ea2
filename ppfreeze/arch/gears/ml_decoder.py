"""``MLDecoder``: the attention-based multi-label head of ML-Decoder (Ridnik et al., 2021,
arXiv:2111.12933), with PaddleClas's arguments, state-dict keys and math.

PaddleClas swaps it into a classifier when ``Arch.use_ml_decoder: true``, configured by the
top-level ``MLDecoder`` section (:func:`attach_ml_decoder`): the layers named in
``remove_layers`` (default ``avg_pool``, ``flatten``) become identities, so the head reads the
whole feature map, and the layer ``replace_layer`` (default ``fc``) becomes the decoder.

Per image: the feature map is projected to ``embed_dim`` (1x1 conv + ReLU); ``query_num``
learned queries (frozen by default) attend to its positions through a transformer decoder
(its self-attention removed by default: the queries do not attend to each other); a grouped
1x1 conv turns each query's output into ``ceil(class_num / query_num)`` logits, and the first
``class_num`` logits are returned.
"""
from __future__ import annotations

import inspect
import math
from typing import Any, Dict, Optional

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...config.errors import ConfigError, did_you_mean

DEFAULT_REMOVE = ("avg_pool", "flatten")
DEFAULT_REPLACE = "fc"


def _self_attention_removed(query: paddle.Tensor, *args: Any) -> paddle.Tensor:
    """Stands in for a decoder layer's self-attention: the queries pass unchanged."""
    return query


class MLDecoder(nn.Layer):
    """ML-Decoder head. Arguments as PaddleClas's (``ppcls/arch/gears/ml_decoder.py``).

    Args:
        class_num: number of labels.
        in_channels: channels of the features it reads (the backbone's ``num_features``).
        query_num: learned queries, clipped to ``[1, class_num]``.
        embed_dim, depth, num_heads, mlp_hidden_dim, dropout, activation: the transformer decoder.
        freeze_query_embed: keep the query embeddings at their initial values (not trained).
        remove_self_attn: drop the first decoder layer's self-attention (PaddleClas removes it
            from the first layer only; later layers of a deeper decoder keep theirs).

    State dict: ``input_proj.*``, ``query_pos_embed.weight``, ``decoder.layers.<i>.*`` (Paddle's
    ``TransformerDecoderLayer`` keys), ``group_conv.*``.
    """

    def __init__(self, class_num: int = 80, in_channels: int = 2048, query_num: int = 80, embed_dim: int = 768,
                 depth: int = 1, num_heads: int = 8, mlp_hidden_dim: int = 2048, dropout: float = 0.1,
                 activation: str = "relu", freeze_query_embed: bool = True, remove_self_attn: bool = True):
        super().__init__()
        for name, value in (("class_num", class_num), ("in_channels", in_channels), ("embed_dim", embed_dim),
                            ("depth", depth), ("num_heads", num_heads), ("mlp_hidden_dim", mlp_hidden_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(name, f"expected an integer >= 1, got {value!r}")
        if embed_dim % num_heads:
            raise ConfigError("embed_dim", f"{embed_dim} is not divisible by num_heads {num_heads}")
        self.class_num = class_num
        self.in_channels = in_channels
        query_num = min(max(int(query_num), 1), class_num)
        # creation order matters for Paddle's generated parameter names (PaddleClas checkpoints)
        self.input_proj = nn.Conv2D(in_channels, embed_dim, kernel_size=1, stride=1)
        self.query_pos_embed = nn.Embedding(query_num, embed_dim)
        self.query_pos_embed.weight.stop_gradient = bool(freeze_query_embed)
        first = nn.TransformerDecoderLayer(d_model=embed_dim, nhead=num_heads, dim_feedforward=mlp_hidden_dim,
                                           dropout=dropout, activation=activation, attn_dropout=dropout,
                                           act_dropout=dropout)
        if remove_self_attn:
            del first.self_attn   # its parameters leave the state dict
            first.self_attn = _self_attention_removed
        # Paddle builds layers 2..depth anew from the first one's arguments (with self-attention)
        self.decoder = nn.TransformerDecoder(first, num_layers=depth)
        self.group_factor = math.ceil(class_num / query_num)
        self.group_conv = nn.Conv2D(query_num * embed_dim, query_num * self.group_factor, kernel_size=1, stride=1,
                                    groups=query_num)
        nn.initializer.XavierNormal()(self.group_conv.weight)
        nn.initializer.Constant(0.0)(self.group_conv.bias)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._as_feature_map(x)
        memory = F.relu(self.input_proj(x)).flatten(2).transpose([0, 2, 1])      # [N, positions, E]
        queries = self.query_pos_embed.weight.unsqueeze(0).tile([x.shape[0], 1, 1])  # [N, Q, E]
        decoded = self.decoder(queries, memory)
        logits = self.group_conv(decoded.flatten(1).unsqueeze(-1).unsqueeze(-1))   # per query: its group
        return logits.flatten(1)[:, :self.class_num]

    def _as_feature_map(self, x: paddle.Tensor) -> paddle.Tensor:
        """``[N, C, H, W]`` as is; ``[N, C, L]`` and flat ``[N, C*L]`` as ``[N, C, L, 1]``."""
        if x.ndim == 2 and x.shape[1] % self.in_channels == 0:
            return x.reshape([x.shape[0], self.in_channels, -1, 1])
        if x.ndim == 3 and x.shape[1] == self.in_channels:
            return x.unsqueeze(-1)
        if x.ndim == 4 and x.shape[1] == self.in_channels:
            return x
        raise ValueError(f"MLDecoder: in_channels is {self.in_channels} but the features have shape "
                         f"{list(x.shape)}; set MLDecoder.in_channels to the backbone's feature width")


def attach_ml_decoder(model: nn.Layer, section: Optional[Dict[str, Any]], key: str = "MLDecoder") -> MLDecoder:
    """PaddleClas's ``Arch.use_ml_decoder``: replace ``model``'s classifier by an :class:`MLDecoder`.

    ``section`` is the config's ``MLDecoder`` mapping: the decoder's arguments plus
    ``remove_layers`` (top-level sublayers that become identities, default ``avg_pool`` and
    ``flatten``) and ``replace_layer`` (the sublayer the decoder replaces, default ``fc``).
    ``class_num`` defaults to the model's. Returns the decoder.
    """
    cfg = dict(section or {})
    if not isinstance(section or {}, dict):
        raise ConfigError(key, f"expected a mapping, got {type(section).__name__}")
    remove = cfg.pop("remove_layers", list(DEFAULT_REMOVE))
    replace = cfg.pop("replace_layer", DEFAULT_REPLACE)
    if not isinstance(remove, (list, tuple)) or not all(isinstance(n, str) for n in remove):
        raise ConfigError(f"{key}.remove_layers", f"expected a list of layer names, got {remove!r}")
    known = inspect.signature(MLDecoder.__init__).parameters
    for name in cfg:
        if name not in known or name == "self":
            raise ConfigError(f"{key}.{name}", "unknown argument of MLDecoder",
                              did_you_mean(name, [*known, "remove_layers", "replace_layer"]).strip() or None)
    if "class_num" not in cfg:
        if getattr(model, "class_num", None) is None:
            raise ConfigError(f"{key}.class_num", f"{type(model).__name__} has no class_num to take it from",
                              "add MLDecoder.class_num")
        cfg["class_num"] = model.class_num
    features = getattr(model, "num_features", None)
    in_channels = cfg.get("in_channels", 2048)
    if replace == DEFAULT_REPLACE and isinstance(features, int) and in_channels != features:
        raise ConfigError(f"{key}.in_channels", f"is {in_channels}, but {type(model).__name__} gives {features}-channel "
                                                f"features to its {replace}", f"set MLDecoder.in_channels: {features}")
    children = dict(model.named_children())
    for name in [*remove, replace]:
        if name not in children:
            field = f"{key}.replace_layer" if name == replace else f"{key}.remove_layers"
            raise ConfigError(field, f"{type(model).__name__} has no top-level layer {name!r}",
                              did_you_mean(name, children).strip() or f"its layers: {', '.join(children)}")
    for name in remove:
        model._sub_layers[name] = nn.Identity()   # _sub_layers: a model attribute may shadow the name
    try:
        decoder = MLDecoder(**cfg)
    except ConfigError as e:
        raise ConfigError(f"{key}.{e.key}", e.message, e.hint) from None
    model._sub_layers[replace] = decoder
    return decoder
