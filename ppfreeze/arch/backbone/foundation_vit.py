"""Foundation-model ViTs (CLIP, BEiT v2, CAE, EVA, MoCo v3, MAE), PaddleClas layout
(``model_zoo/foundation_vit.py``, ``variant_models/foundation_vit_variant.py``).

One ViT whose details vary per pre-training recipe; PaddleClas switches them through tables
keyed by the model name, here each variant states them as class attributes:

    has_ln_pre         LayerNorm ``ln_pre`` before the blocks (CLIP); otherwise an Identity of that name
    has_rel_pos_bias   a relative-position bias table in every attention layer (BEiT v2, CAE)
    has_layer_scale    per-channel ``gamma_1`` / ``gamma_2`` on both residual branches (BEiT v2, CAE)
    has_abs_pos_embed  a learned absolute position embedding (all but BEiT v2)
    drop_cls_token     the class token is dropped after the blocks (CLIP ViT-B/16): the classifier
                       then reads the first patch token, as in PaddleClas
    has_fc_norm        the head pools the patch tokens and normalises them (MAE ViT-H/14)

Keys (PaddleClas's, so its ``.pdparams`` load as-is):

    pos_embed [1, 1+N, C], cls_token [1, 1, C], proj [C, output_dim]
    patch_embed.proj.weight (conv, no bias), [ln_pre.weight / bias]
    blocks.<i>.[gamma_1, gamma_2,] norm1, attn.[relative_position_bias_table,
        relative_position_index,] qkv, proj, norm2, mlp.fc1, mlp.fc2
    norm, head.[fc_norm,] fc_head

Forward: patch_embed (pads to a multiple of the patch) -> prepend cls_token -> + pos_embed
(bicubically resized when the patch grid differs from the native one, so these models run at
any input size, except BEiT v2 / CAE whose relative-position tables fix it) -> ln_pre ->
pos_drop -> blocks -> then

    classification (default): norm(class token) -> head.fc_head
    ``return_embed: true``:    norm(every token) @ proj ([B, tokens, output_dim]); with
                               ``return_mean_embed: true`` the mean over tokens ([B, output_dim])

Stages: ``stem`` = patch_embed, cls_token, pos_embed, ln_pre, pos_drop; ``stage1..4`` = the
blocks in four equal groups; ``head`` = norm, head, proj.

Where PaddleClas's forward cannot run, this module does what its code evidently intends, and
says so: without a classifier (``class_num: null``; EVA's default) the output is the pooled,
normalised feature ``[B, C]`` (PaddleClas's ``Head`` returns its first column); MAE ViT-H/14's
``fc_norm`` head pools the normalised patch tokens (PaddleClas pools the class token first and
then fails in ``fc_norm``); the aesthetic predictor (PaddleClas indexes a 2-D tensor with three
indices) scores CLIP ViT-L/14's normalised class token.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.nn.initializer import Normal

from ...config.errors import ConfigError
from ...config.expr import to_number
from ..base import ArchModel
from ..registry import MODELS
from .common import check_class_num, param_attr
from .transformer_layers import (Block, accept_fused_flags, block_stages, check_positive_int, check_rate,
                                 drop_path_rates, layer_norm, linear, optional_class_num, trunc_normal)


VARIANT_DEFAULT = "the variant's default"  # class_num: 1000, or none for EVA


class PatchEmbed(nn.Layer):
    """Strided conv (no bias) over the image padded at the bottom/right to a multiple of the
    patch; returns the tokens ``[B, N, C]`` and the patch grid ``(H, W)``."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2D(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, bias_attr=False)

    def forward(self, x: paddle.Tensor) -> Tuple[paddle.Tensor, Tuple[int, int]]:
        h, w = x.shape[2], x.shape[3]
        p = self.patch_size
        if h % p or w % p:
            x = F.pad(x, (0, 0, 0, 0, 0, (p - h % p) % p, 0, (p - w % p) % p))
        x = self.proj(x)
        grid = (x.shape[2], x.shape[3])
        return x.flatten(2).transpose([0, 2, 1]), grid


def resize_pos_embed(pos_embed: paddle.Tensor, src: Tuple[int, int], dst: Tuple[int, int]) -> paddle.Tensor:
    """The position embedding for a ``dst`` patch grid: the class-token entry as is, the patch
    entries bicubically resized (in float32) from the native ``src`` grid."""
    if tuple(src) == tuple(dst):
        return pos_embed
    c = pos_embed.shape[2]
    patches = pos_embed[:, 1:].reshape([-1, src[0], src[1], c]).transpose([0, 3, 1, 2])
    resized = F.interpolate(paddle.cast(patches, "float32"), size=list(dst), mode="bicubic", align_corners=False)
    resized = paddle.cast(resized.flatten(2).transpose([0, 2, 1]), pos_embed.dtype)
    return paddle.concat([pos_embed[:, :1], resized], axis=1)


class Head(nn.Layer):
    """``[fc_norm ->] fc_head``; without a classifier (``class_num`` None) only the optional fc_norm."""

    def __init__(self, embed_dim: int, class_num: Optional[int], fc_norm: bool, init_scale: float):
        super().__init__()
        self.fc_norm = layer_norm(embed_dim, 1e-5) if fc_norm else None
        self.fc_head = linear(embed_dim, class_num, init_scale=init_scale) if class_num is not None else None

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.fc_norm is not None:
            x = self.fc_norm(x)
        return self.fc_head(x) if self.fc_head is not None else x


class FoundationViT(ArchModel):
    """The foundation-model ViT; subclasses fix the architecture and the recipe switches.

    Args:
        class_num: classifier width (default 1000; EVA: none); None (null) for no classifier.
        in_chans: image channels.
        output_dim: width of ``proj`` (the embedding returned with ``return_embed``).
        qk_scale: attention logit scale (default ``head_dim ** -0.5``).
        drop_rate / attn_drop_rate / drop_path_rate: dropout, attention dropout, stochastic depth
            (linear from 0 to ``drop_path_rate`` over the blocks).
        head_init_scale: multiplies the classifier's initial weights (PaddleClas's default 0.001).
        return_embed: return the projected token embeddings instead of logits (no classifier).
        return_mean_embed: with ``return_embed``, average them over the tokens.
        use_fused_attn / use_fused_linear: accepted, no effect (CUDA kernels for the same math).
    """
    img_size: int = 224
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    epsilon: float = 1e-5
    has_ln_pre: bool = False
    has_rel_pos_bias: bool = False
    has_layer_scale: bool = False
    has_abs_pos_embed: bool = True
    drop_cls_token: bool = False
    has_fc_norm: bool = False
    default_class_num: Optional[int] = 1000

    def __init__(self, class_num: Any = VARIANT_DEFAULT, in_chans: int = 3, output_dim: int = 512,
                 qk_scale: Optional[float] = None, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, head_init_scale: float = 0.001, return_embed: bool = False,
                 return_mean_embed: bool = False, use_fused_attn: bool = False, use_fused_linear: bool = False):
        super().__init__()
        class_num = optional_class_num(self.default_class_num if class_num is VARIANT_DEFAULT else class_num)
        in_chans = check_positive_int(in_chans, "in_chans")
        output_dim = check_positive_int(output_dim, "output_dim")
        qk_scale = None if qk_scale is None else float(to_number(qk_scale, "qk_scale"))
        drop_rate = check_rate(drop_rate, "drop_rate")
        attn_drop_rate = check_rate(attn_drop_rate, "attn_drop_rate")
        dpr = drop_path_rates(check_rate(drop_path_rate, "drop_path_rate"), self.depth)
        head_init_scale = float(to_number(head_init_scale, "head_init_scale"))
        for key, value in (("return_embed", return_embed), ("return_mean_embed", return_mean_embed)):
            if not isinstance(value, bool):
                raise ConfigError(key, f"expected true or false, got {value!r}")
        accept_fused_flags(use_fused_attn, use_fused_linear)
        dim = self.embed_dim
        self.grid = (self.img_size // self.patch_size,) * 2
        self.return_embed = return_embed
        self.return_mean_embed = return_mean_embed and return_embed

        self.patch_embed = PatchEmbed(self.patch_size, in_chans, dim)
        # root parameters in PaddleClas's order: the state-dict order
        if self.has_abs_pos_embed:
            self.pos_embed = self.create_parameter([1, self.grid[0] * self.grid[1] + 1, dim],
                                                   attr=param_attr(initializer=trunc_normal()))
        else:
            self.pos_embed = None
        self.cls_token = self.create_parameter([1, 1, dim], attr=param_attr(initializer=trunc_normal()))
        self.proj = self.create_parameter([dim, output_dim], attr=param_attr(initializer=Normal(std=dim ** -0.5)))
        # proj maps tokens to the embedding only with return_embed; a classifier never reads it
        # (nor does PaddleClas's): keep it out of the optimizer explicitly
        self.proj.stop_gradient = not return_embed
        # ln_pre runs before pos_drop; registering it first keeps the units in forward order
        # (pos_drop has no state, so the state-dict order is PaddleClas's all the same)
        self.ln_pre = layer_norm(dim) if self.has_ln_pre else nn.Identity()
        self.pos_drop = nn.Dropout(p=drop_rate)
        self.blocks = nn.LayerList([
            Block(dim, self.num_heads, mlp_ratio=self.mlp_ratio, qkv_bias=True, qk_scale=qk_scale, drop=drop_rate,
                  attn_drop=attn_drop_rate, drop_path=dpr[i], epsilon=self.epsilon, layer_scale=self.has_layer_scale,
                  rel_pos_window=self.grid if self.has_rel_pos_bias else None)
            for i in range(self.depth)])
        self.norm = layer_norm(dim, self.epsilon)
        self.head = nn.Identity() if return_embed else Head(dim, class_num, self.has_fc_norm, head_init_scale)

        self.class_num = None if return_embed else class_num
        self.num_features = output_dim if return_embed else dim
        if self.has_rel_pos_bias:  # the bias tables are sized for the native patch grid
            self.input_size = self.min_input_size = self.img_size
        stem = ["patch_embed", "cls_token"] + (["pos_embed"] if self.has_abs_pos_embed else []) + ["ln_pre", "pos_drop"]
        self.stages = block_stages(stem, self.depth, ["norm", "head", "proj"])

    def forward_tokens(self, x: paddle.Tensor) -> paddle.Tensor:
        """Token sequence after the last block (before the final norm)."""
        x, grid = self.patch_embed(x)
        cls_token = self.cls_token.expand([x.shape[0], -1, -1]).astype(x.dtype)
        x = paddle.concat([cls_token, x], axis=1)
        if self.pos_embed is not None:
            x = x + resize_pos_embed(self.pos_embed, self.grid, grid)
        x = self.pos_drop(self.ln_pre(x))
        for block in self.blocks:
            x = block(x)
        return x[:, 1:] if self.drop_cls_token else x

    def forward_features(self, x: paddle.Tensor) -> paddle.Tensor:
        """The normalised feature the classifier reads, ``[B, C]``: the first token, or (with
        ``fc_norm``) the mean of the patch tokens."""
        x = self.forward_tokens(x)
        if self.has_fc_norm:
            return self.norm(x)[:, 1:].mean(1)
        return self.norm(x[:, 0])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if not self.return_embed:
            return self.head(self.forward_features(x))
        x = self.head(self.norm(self.forward_tokens(x))) @ self.proj
        return x.mean(1) if self.return_mean_embed else x


@MODELS.register
class CLIP_vit_base_patch32_224(FoundationViT):
    patch_size, embed_dim, depth, num_heads, has_ln_pre = 32, 768, 12, 12, True


@MODELS.register
class CLIP_vit_base_patch16_224(FoundationViT):
    patch_size, embed_dim, depth, num_heads, has_ln_pre, drop_cls_token = 16, 768, 12, 12, True, True


@MODELS.register
class CLIP_vit_large_patch14_336(FoundationViT):
    img_size, patch_size, embed_dim, depth, num_heads, has_ln_pre = 336, 14, 1024, 24, 16, True


@MODELS.register
class CLIP_vit_large_patch14_224(FoundationViT):
    patch_size, embed_dim, depth, num_heads, has_ln_pre = 14, 1024, 24, 16, True


class _BEiTStyle(FoundationViT):
    """BEiT v2 / CAE: relative-position bias and layer scale in every block."""
    epsilon, has_rel_pos_bias, has_layer_scale = 1e-6, True, True


@MODELS.register
class BEiTv2_vit_base_patch16_224(_BEiTStyle):
    embed_dim, depth, num_heads, has_abs_pos_embed = 768, 12, 12, False


@MODELS.register
class BEiTv2_vit_large_patch16_224(_BEiTStyle):
    embed_dim, depth, num_heads, has_abs_pos_embed = 1024, 24, 16, False


@MODELS.register
class CAE_vit_base_patch16_224(_BEiTStyle):
    embed_dim, depth, num_heads = 768, 12, 12


@MODELS.register
class EVA_vit_giant_patch14(FoundationViT):
    # PaddleClas builds it without a classifier (and cannot take class_num); ours may add one
    patch_size, embed_dim, depth, num_heads, mlp_ratio, default_class_num = 14, 1408, 40, 16, 4.3637, None


@MODELS.register
class MOCOV3_vit_small(FoundationViT):
    embed_dim, depth, num_heads = 384, 12, 12


@MODELS.register
class MOCOV3_vit_base(FoundationViT):
    embed_dim, depth, num_heads = 768, 12, 12


@MODELS.register
class MAE_vit_base_patch16(FoundationViT):
    embed_dim, depth, num_heads = 768, 12, 12


@MODELS.register
class MAE_vit_large_patch16(FoundationViT):
    embed_dim, depth, num_heads = 1024, 24, 16


@MODELS.register
class MAE_vit_huge_patch14(FoundationViT):
    patch_size, embed_dim, depth, num_heads, has_fc_norm = 14, 1280, 32, 16, True


class AestheticMLP(nn.Layer):
    """The LAION aesthetic-score MLP: 768 -> 1024 -> 128 -> 64 -> 16 -> ``out_features``."""

    def __init__(self, in_features: int, out_features: int = 1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_features, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, out_features))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.layers(x)


@MODELS.register
class CLIP_large_patch14_224_aesthetic(ArchModel):
    """Aesthetic score of an image (PaddleClas's practical model): CLIP ViT-L/14's normalised
    class token -> ``fc_head`` (CLIP's 1024 -> 768 projection) -> L2 normalisation -> MLP.

    Keys: ``model.*`` (a CLIP_vit_large_patch14_224 with its unused 1000-way head and ``proj``,
    as in PaddleClas's file), ``fc_head.weight``, ``mlp.layers.{0,2,4,6,7}.*``.

    Args:
        class_num: outputs of the last MLP layer (1: the score; PaddleClas ignores the argument).
    """

    def __init__(self, class_num: int = 1):
        super().__init__()
        class_num = check_class_num(class_num)
        self.model = CLIP_vit_large_patch14_224()
        self.fc_head = nn.Linear(1024, 768, bias_attr=False)
        self.mlp = AestheticMLP(768, class_num)
        self.class_num = class_num
        self.num_features = 768
        inner = self.model.stages
        self.stages = {name: [f"model.{u}" for u in units] for name, units in inner.items()}
        self.stages["head"] = self.stages["head"] + ["fc_head", "mlp"]

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.fc_head(self.model.forward_features(x))
        return self.mlp(F.normalize(x, p=2, axis=-1))
