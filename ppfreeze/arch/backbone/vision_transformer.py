"""Vision Transformer (Dosovitskiy et al. 2020), PaddleClas layout (``model_zoo/vision_transformer.py``).

Parameter names and order follow PaddleClas, so its ``ViT_*_pretrained.pdparams`` load as-is:

    pos_embed [1, 1+N, C], cls_token [1, 1, C]
    patch_embed.proj.weight / bias                  (a stride-``patch`` conv)
    blocks.<i>.norm1 / attn.qkv / attn.proj / norm2 / mlp.fc1 / mlp.fc2
    norm.weight / bias, head.weight / bias

Forward: patch_embed -> prepend cls_token -> + pos_embed -> pos_drop -> blocks -> norm ->
head(class token). The position embedding is fixed, so the model runs at ``img_size`` only.

Stages: ``stem`` = patch_embed, cls_token, pos_embed, pos_drop; ``stage1..4`` = the blocks in
four consecutive groups (depth 12: three each); ``head`` = norm, head. ``Freeze.until: blocks.7``
freezes the stem and the first eight blocks.
"""
from __future__ import annotations

from typing import Optional

import paddle
import paddle.nn as nn

from ...config.errors import ConfigError
from ...config.expr import to_number
from ..base import ArchModel
from ..registry import MODELS
from .common import check_class_num, param_attr
from .transformer_layers import (Block, block_stages, check_positive_int, check_rate, drop_path_rates, layer_norm,
                                 linear, trunc_normal)


class PatchEmbed(nn.Layer):
    """Cut the image into ``patch x patch`` squares and project each to ``embed_dim`` (a strided
    conv); output ``[B, N, C]``. Only ``img_size`` inputs are accepted (fixed position embedding)."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.img_size = img_size
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2D(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        h, w = x.shape[2], x.shape[3]
        if h != self.img_size or w != self.img_size:
            raise ValueError(f"input is {h}x{w}, but this model's position embedding is fixed to "
                             f"{self.img_size}x{self.img_size} (resize the images to {self.img_size})")
        return self.proj(x).flatten(2).transpose([0, 2, 1])


class VisionTransformer(ArchModel):
    """ViT backbone + linear classifier on the class token. Subclasses fix the architecture.

    Args:
        class_num: classifier width.
        img_size: input resolution (default: the variant's native one); the position embedding
            has ``(img_size // patch) ** 2 + 1`` entries.
        in_chans: image channels.
        qk_scale: attention logit scale (default ``head_dim ** -0.5``; ViT_small fixes 768 ** -0.5).
        drop_rate: dropout after the position embedding, in attention output and MLP.
        attn_drop_rate: dropout on the attention weights.
        drop_path_rate: stochastic depth of the last block (linear from 0 over the blocks).
    """
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    default_qk_scale: Optional[float] = None
    epsilon: float = 1e-6
    default_img_size: int = 224
    num_extra_tokens: int = 1  # the class token

    def __init__(self, class_num: int = 1000, img_size: Optional[int] = None, in_chans: int = 3,
                 qk_scale: Optional[float] = None, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0):
        super().__init__()
        class_num = check_class_num(class_num)
        img_size = check_positive_int(self.default_img_size if img_size is None else img_size, "img_size")
        if img_size < self.patch_size:
            raise ConfigError("img_size", f"must be at least the patch size {self.patch_size}, got {img_size}")
        in_chans = check_positive_int(in_chans, "in_chans")
        qk_scale = self.default_qk_scale if qk_scale is None else float(to_number(qk_scale, "qk_scale"))
        drop_rate = check_rate(drop_rate, "drop_rate")
        attn_drop_rate = check_rate(attn_drop_rate, "attn_drop_rate")
        dpr = drop_path_rates(check_rate(drop_path_rate, "drop_path_rate"), self.depth)
        dim = self.embed_dim

        self.patch_embed = PatchEmbed(img_size, self.patch_size, in_chans, dim)
        # root parameters in PaddleClas's order (pos_embed first): the state-dict order
        self.pos_embed = self._token_param(self.patch_embed.num_patches + self.num_extra_tokens)
        self.cls_token = self._token_param(1)
        self.pos_drop = nn.Dropout(p=drop_rate)
        self.blocks = nn.LayerList([
            Block(dim, self.num_heads, mlp_ratio=self.mlp_ratio, qkv_bias=self.qkv_bias, qk_scale=qk_scale,
                  drop=drop_rate, attn_drop=attn_drop_rate, drop_path=dpr[i], epsilon=self.epsilon)
            for i in range(self.depth)])
        self.norm = layer_norm(dim, self.epsilon)
        self.head = linear(dim, class_num)

        self.class_num = class_num
        self.num_features = dim
        self.input_size = img_size
        self.min_input_size = img_size
        self.stages = block_stages(["patch_embed", "cls_token", "pos_embed", "pos_drop"], self.depth, ["norm", "head"])

    def _token_param(self, length: int) -> paddle.Tensor:
        return self.create_parameter([1, length, self.embed_dim], attr=param_attr(initializer=trunc_normal()))

    def _tokens(self, x: paddle.Tensor) -> paddle.Tensor:
        """Patch tokens with the class token prepended."""
        x = self.patch_embed(x)
        cls_token = self.cls_token.expand([x.shape[0], -1, -1]).astype(x.dtype)
        return paddle.concat([cls_token, x], axis=1)

    def forward_features(self, x: paddle.Tensor) -> paddle.Tensor:
        """Normalised token sequence ``[B, extra + N, C]`` after the last block."""
        x = self.pos_drop(self._tokens(x) + self.pos_embed)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.head(self.forward_features(x)[:, 0])


@MODELS.register
class ViT_small_patch16_224(VisionTransformer):
    # PaddleClas's "small": depth 8, mlp ratio 3, no qkv bias, scale 768 ** -0.5 (not timm's ViT-S)
    patch_size, embed_dim, depth, num_heads, mlp_ratio = 16, 768, 8, 8, 3.0
    qkv_bias, default_qk_scale, epsilon = False, 768 ** -0.5, 1e-5


@MODELS.register
class ViT_base_patch16_224(VisionTransformer):
    patch_size, embed_dim, depth, num_heads = 16, 768, 12, 12


@MODELS.register
class ViT_base_patch16_384(VisionTransformer):
    patch_size, embed_dim, depth, num_heads, default_img_size = 16, 768, 12, 12, 384


@MODELS.register
class ViT_base_patch32_384(VisionTransformer):
    patch_size, embed_dim, depth, num_heads, default_img_size = 32, 768, 12, 12, 384


@MODELS.register
class ViT_large_patch16_224(VisionTransformer):
    patch_size, embed_dim, depth, num_heads = 16, 1024, 24, 16


@MODELS.register
class ViT_large_patch16_384(VisionTransformer):
    patch_size, embed_dim, depth, num_heads, default_img_size = 16, 1024, 24, 16, 384


@MODELS.register
class ViT_large_patch32_384(VisionTransformer):
    patch_size, embed_dim, depth, num_heads, default_img_size = 32, 1024, 24, 16, 384
