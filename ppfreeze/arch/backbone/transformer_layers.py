"""Building blocks shared by the transformer backbones (ViT, DeiT, foundation ViTs, Swin).

Sublayer names follow PaddleClas (``norm1``, ``attn.qkv``, ``mlp.fc1`` ...), so its checkpoints
load by name. Weight initialisation follows PaddleClas too: Linear weights truncated normal
(std 0.02), biases zero, LayerNorm ones / zeros.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import paddle
import paddle.nn as nn
from paddle.nn.initializer import Constant, TruncatedNormal

from ...config.errors import ConfigError
from ...config.expr import to_number
from .common import DropPath, check_class_num, check_positive_int, check_probability, param_attr  # noqa: F401

STD = 0.02


def trunc_normal(scale: float = 1.0) -> TruncatedNormal:
    """PaddleClas's ``TruncatedNormal(std=.02)``, optionally multiplied by ``scale``
    (the same distribution as drawing and then scaling the tensor, as ``head_init_scale`` does)."""
    return TruncatedNormal(mean=0.0, std=STD * scale, a=-2.0 * scale, b=2.0 * scale)


def linear(in_features: int, out_features: int, bias: bool = True, init_scale: float = 1.0) -> nn.Linear:
    """A Linear layer initialised like PaddleClas's transformers (trunc-normal weight, zero bias)."""
    return nn.Linear(in_features, out_features, weight_attr=param_attr(initializer=trunc_normal(init_scale)),
                     bias_attr=param_attr(initializer=Constant(0.0)) if bias else False)


def layer_norm(dim: int, epsilon: float = 1e-5) -> nn.LayerNorm:
    return nn.LayerNorm(dim, epsilon=epsilon)


class Mlp(nn.Layer):
    """fc1 -> GELU -> dropout -> fc2 -> dropout."""

    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def relative_position_index(window: Sequence[int], with_cls_token: bool = False) -> np.ndarray:
    """Index into a relative-position bias table for every (query, key) pair of a window.

    The table has ``(2*Wh-1) * (2*Ww-1)`` entries (plus 3 for the class token's to-token,
    from-token and self entries when ``with_cls_token``: BEiT / CAE); the index is int64
    ``[Wh*Ww, Wh*Ww]`` (``+1`` on each side with the class token first).
    """
    wh, ww = int(window[0]), int(window[1])
    coords = np.stack(np.meshgrid(np.arange(wh), np.arange(ww), indexing="ij")).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0)
    rel[:, :, 0] += wh - 1
    rel[:, :, 1] += ww - 1
    rel[:, :, 0] *= 2 * ww - 1
    index = rel.sum(-1).astype("int64")
    if not with_cls_token:
        return index
    size = (2 * wh - 1) * (2 * ww - 1) + 3
    full = np.zeros((wh * ww + 1, wh * ww + 1), dtype="int64")
    full[1:, 1:] = index
    full[0, :] = size - 3   # class token -> tokens
    full[:, 0] = size - 2   # tokens -> class token
    full[0, 0] = size - 1   # class token -> itself
    return full


class Attention(nn.Layer):
    """Multi-head self-attention over all tokens: ``softmax(q k^T * scale [+ bias]) v``.

    Args:
        dim: token width; num_heads: heads (``dim`` must divide evenly).
        qkv_bias: a bias on the fused q/k/v projection.
        qk_scale: the logit scale (default ``head_dim ** -0.5``).
        rel_pos_window: (Wh, Ww) patch grid for a learned relative-position bias with a class
            token (BEiT v2 / CAE); None for none.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False, qk_scale: Optional[float] = None,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, rel_pos_window: Optional[Sequence[int]] = None):
        super().__init__()
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.rel_pos_window = tuple(rel_pos_window) if rel_pos_window is not None else None
        if self.rel_pos_window is not None:
            wh, ww = self.rel_pos_window
            self.relative_position_bias_table = self.create_parameter(
                [(2 * wh - 1) * (2 * ww - 1) + 3, num_heads], default_initializer=Constant(0.0))
            self.register_buffer("relative_position_index",
                                 paddle.to_tensor(relative_position_index(self.rel_pos_window, with_cls_token=True)))
        self.qkv = linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def relative_position_bias(self) -> paddle.Tensor:
        """The bias ``[heads, N, N]`` looked up from the table (N = Wh*Ww + 1)."""
        n = self.rel_pos_window[0] * self.rel_pos_window[1] + 1
        bias = self.relative_position_bias_table[self.relative_position_index.reshape([-1])]
        return bias.reshape([n, n, -1]).transpose([2, 0, 1])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        n, c = x.shape[1], x.shape[2]
        qkv = self.qkv(x).reshape([-1, n, 3, self.num_heads, c // self.num_heads]).transpose([2, 0, 3, 1, 4])
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = q.matmul(k.transpose([0, 1, 3, 2])) * self.scale
        if self.rel_pos_window is not None:
            attn = attn + self.relative_position_bias().unsqueeze(0)
        attn = self.attn_drop(nn.functional.softmax(attn, axis=-1))
        x = attn.matmul(v).transpose([0, 2, 1, 3]).reshape([-1, n, c])
        return self.proj_drop(self.proj(x))


class Block(nn.Layer):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``, each
    branch through stochastic depth and, with ``layer_scale``, multiplied by a learned
    per-channel ``gamma_1`` / ``gamma_2`` (initialised to 0, as PaddleClas does)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = False,
                 qk_scale: Optional[float] = None, drop: float = 0.0, attn_drop: float = 0.0,
                 drop_path: float = 0.0, epsilon: float = 1e-5, layer_scale: bool = False,
                 rel_pos_window: Optional[Sequence[int]] = None):
        super().__init__()
        self.norm1 = layer_norm(dim, epsilon)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale, attn_drop=attn_drop,
                              proj_drop=drop, rel_pos_window=rel_pos_window)
        self.drop_path = DropPath(drop_path)
        if layer_scale:
            self.gamma_1 = self.create_parameter([dim], default_initializer=Constant(0.0))
            self.gamma_2 = self.create_parameter([dim], default_initializer=Constant(0.0))
        else:
            self.gamma_1 = self.gamma_2 = None
        self.norm2 = layer_norm(dim, epsilon)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.gamma_1 is None:
            x = x + self.drop_path(self.attn(self.norm1(x)))
            return x + self.drop_path(self.mlp(self.norm2(x)))
        x = x + self.drop_path(self.gamma_1 * self.attn(self.norm1(x)))
        return x + self.drop_path(self.gamma_2 * self.mlp(self.norm2(x)))


def drop_path_rates(rate: float, depth: int) -> List[float]:
    """Stochastic-depth rate of each block: linear from 0 to ``rate``."""
    return [float(r) for r in np.linspace(0, rate, depth)]


def block_stages(stem: Sequence[str], depth: int, head: Sequence[str], prefix: str = "blocks",
                 groups: int = 4) -> Dict[str, List[str]]:
    """stem, stage1..stage``groups`` (``depth`` blocks in consecutive, equal-as-possible groups), head."""
    stages: Dict[str, List[str]] = OrderedDict(stem=list(stem))
    bounds = np.linspace(0, depth, groups + 1).round().astype(int)
    for n in range(groups):
        stages[f"stage{n + 1}"] = [f"{prefix}.{i}" for i in range(bounds[n], bounds[n + 1])]
    stages["head"] = list(head)
    return stages


# one name per check across the families (same meaning as common.check_probability)
check_rate = check_probability


def optional_class_num(class_num: Any) -> Optional[int]:
    """``class_num`` for models that may run without a classifier: None, or a positive integer."""
    if class_num is None:
        return None
    if class_num == 0 and not isinstance(class_num, bool):
        raise ConfigError("class_num", "0 is PaddleClas's way of dropping the classifier; ppfreeze spells it null",
                          "set class_num: null for a feature extractor")
    return check_class_num(class_num)


def accept_fused_flags(use_fused_attn: Any, use_fused_linear: Any) -> None:
    """PaddleClas's ``use_fused_attn`` / ``use_fused_linear`` pick CUDA kernels (on sm80+ GPUs
    only) for the same math: ``scaled_dot_product_attention`` for the softmax attention and
    ``FusedLinear`` (same [in, out] weight, same bias) for ``Linear``. ppfreeze accepts them as
    no-ops: outputs and state-dict keys do not depend on them."""
    for key, value in (("use_fused_attn", use_fused_attn), ("use_fused_linear", use_fused_linear)):
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {value!r}")
