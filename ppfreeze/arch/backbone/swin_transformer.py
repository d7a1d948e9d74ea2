"""Swin Transformer (Liu et al. 2021), PaddleClas layout (``legendary_models/swin_transformer.py``
and the SOLIDER variants of ``variant_models/swin_transformer_variant.py``).

Keys (PaddleClas's, so its ``SwinTransformer_*_pretrained.pdparams`` load as-is):

    patch_embed.proj.weight / bias, patch_embed.norm.weight / bias
    layers.<s>.blocks.<i>.norm1, attn.relative_position_bias_table, attn.relative_position_index,
        attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2
    layers.<s>.downsample.reduction.weight, layers.<s>.downsample.norm   (stages 0-2)
    norm.weight / bias, head.weight / bias

Forward: patch_embed (the image padded to a multiple of the patch) -> pos_drop -> 4 stages of
(shifted-)window attention blocks, each but the last ending in a 2x2 patch merging -> norm ->
average over tokens (``avgpool``) -> head. Like PaddleClas, feature maps are padded to a multiple
of the window (and to even sizes before merging), so any input size runs; the native sizes
(224, 384) need no padding. The last stage keeps the shifted windows even where the feature map
is no larger than a window (PaddleClas's behaviour, which its weights were evaluated with).

Stages: ``stem`` = patch_embed, pos_drop; ``stage1..4`` = ``layers.0..3`` (the patch merging
that ends a stage belongs to it); ``head`` = norm, avgpool, head.
"""
from __future__ import annotations

import functools
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...config.errors import ConfigError
from ...config.expr import to_number
from ..base import ArchModel
from ..registry import MODELS
from .common import check_class_num, param_attr
from .transformer_layers import (DropPath, Mlp, accept_fused_flags, check_positive_int, check_rate,
                                 drop_path_rates, linear, relative_position_index, trunc_normal)

MASKED = -100.0  # logit added between tokens of different regions in a shifted window


def pad_to_multiple(x: paddle.Tensor, multiple: int, channels_last: bool) -> paddle.Tensor:
    """Zero-pad the bottom and right of ``x`` (NCHW, or NHWC with ``channels_last``) up to a multiple."""
    h, w = (x.shape[1], x.shape[2]) if channels_last else (x.shape[2], x.shape[3])
    pad_h, pad_w = (multiple - h % multiple) % multiple, (multiple - w % multiple) % multiple
    if not pad_h and not pad_w:
        return x
    pads = (0, 0, 0, pad_h, 0, pad_w, 0, 0) if channels_last else (0, 0, 0, 0, 0, pad_h, 0, pad_w)
    return F.pad(x, pads)


def window_partition(x: paddle.Tensor, window: int) -> paddle.Tensor:
    """``[B, H, W, C]`` -> ``[B * windows, window, window, C]``."""
    b, h, w, c = x.shape
    x = x.reshape([b, h // window, window, w // window, window, c])
    return x.transpose([0, 1, 3, 2, 4, 5]).reshape([-1, window, window, c])


def window_reverse(windows: paddle.Tensor, window: int, h: int, w: int, c: int) -> paddle.Tensor:
    """Inverse of :func:`window_partition`: ``[B * windows, window, window, C]`` -> ``[B, H, W, C]``."""
    x = windows.reshape([-1, h // window, w // window, window, window, c])
    return x.transpose([0, 1, 3, 2, 4, 5]).reshape([-1, h, w, c])


@functools.lru_cache(maxsize=64)
def shifted_window_mask(h: int, w: int, window: int, shift: int) -> np.ndarray:
    """``[windows, window**2, window**2]``: 0 between tokens of the same region of the rolled
    ``h x w`` map, -100 between tokens that the cyclic shift brought together (cached: do not
    modify the returned array)."""
    regions = np.zeros((h, w), dtype="float32")
    bounds = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for i, (hs, ws) in enumerate((hs, ws) for hs in bounds for ws in bounds):
        regions[hs, ws] = i
    regions = regions.reshape(h // window, window, w // window, window).transpose(0, 2, 1, 3)
    regions = regions.reshape(-1, window * window)
    diff = regions[:, None, :] - regions[:, :, None]
    return np.where(diff != 0, MASKED, 0.0).astype("float32")


class WindowAttention(nn.Layer):
    """Multi-head self-attention inside each window, with a learned relative-position bias."""

    def __init__(self, dim: int, window: int, num_heads: int, qkv_bias: bool = True,
                 qk_scale: Optional[float] = None, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        self.window = window
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.relative_position_bias_table = self.create_parameter(
            [(2 * window - 1) ** 2, num_heads], attr=param_attr(initializer=trunc_normal()))
        self.register_buffer("relative_position_index", paddle.to_tensor(relative_position_index((window, window))))
        self.qkv = linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.softmax = nn.Softmax(axis=-1)

    def relative_position_bias(self) -> paddle.Tensor:
        """``[1, heads, window**2, window**2]`` looked up from the table."""
        n = self.window * self.window
        bias = paddle.index_select(self.relative_position_bias_table, self.relative_position_index.reshape([-1]))
        return bias.reshape([n, n, -1]).transpose([2, 0, 1]).unsqueeze(0)

    def forward(self, x: paddle.Tensor, mask: Optional[paddle.Tensor] = None) -> paddle.Tensor:
        """``x``: ``[B * windows, window**2, C]``; ``mask``: ``[windows, window**2, window**2]`` or None."""
        b, n, c = x.shape
        qkv = self.qkv(x).reshape([b, n, 3, self.num_heads, c // self.num_heads]).transpose([2, 0, 3, 1, 4])
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = paddle.matmul(q, k.transpose([0, 1, 3, 2])) + self.relative_position_bias()
        if mask is not None:
            windows = mask.shape[0]
            attn = attn.reshape([b // windows, windows, self.num_heads, n, n]) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.reshape([b, self.num_heads, n, n])
        attn = self.attn_drop(self.softmax(attn))
        x = paddle.matmul(attn, v).transpose([0, 2, 1, 3]).reshape([b, n, c])
        return self.proj_drop(self.proj(x))


class SwinTransformerBlock(nn.Layer):
    """(Shifted-)window attention and an MLP, each pre-norm with a residual. Odd blocks of a
    stage roll the map by half a window first, so information crosses window borders."""

    def __init__(self, dim: int, num_heads: int, window: int, shift: int, mlp_ratio: float, qkv_bias: bool,
                 qk_scale: Optional[float], drop: float, attn_drop: float, drop_path: float):
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale,
                                    attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x: paddle.Tensor, size: Tuple[int, int]) -> paddle.Tensor:
        h, w = size
        b, _, c = x.shape
        shortcut = x
        x = pad_to_multiple(self.norm1(x).reshape([b, h, w, c]), self.window, channels_last=True)
        hp, wp = x.shape[1], x.shape[2]
        mask = None
        if self.shift > 0:
            x = paddle.roll(x, shifts=(-self.shift, -self.shift), axis=(1, 2))
            mask = paddle.to_tensor(shifted_window_mask(hp, wp, self.window, self.shift)).astype(x.dtype)
        windows = window_partition(x, self.window).reshape([-1, self.window * self.window, c])
        windows = self.attn(windows, mask=mask).reshape([-1, self.window, self.window, c])
        x = window_reverse(windows, self.window, hp, wp, c)
        if self.shift > 0:
            x = paddle.roll(x, shifts=(self.shift, self.shift), axis=(1, 2))
        if hp != h or wp != w:
            x = x[:, :h, :w, :]
        x = shortcut + self.drop_path(x.reshape([b, h * w, c]))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Layer):
    """Concatenate each 2x2 neighbourhood (the map padded to even sizes) -> LayerNorm -> Linear 4C -> 2C."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: paddle.Tensor, size: Tuple[int, int]) -> paddle.Tensor:
        h, w = size
        b, _, c = x.shape
        x = pad_to_multiple(x.reshape([b, h, w, c]), 2, channels_last=True)
        x = paddle.concat([x[:, 0::2, 0::2, :], x[:, 1::2, 0::2, :], x[:, 0::2, 1::2, :], x[:, 1::2, 1::2, :]], -1)
        return self.reduction(self.norm(x.reshape([b, -1, 4 * c])))


class BasicLayer(nn.Layer):
    """One stage: ``depth`` blocks (alternately plain and shifted windows), then an optional
    patch merging. ``forward(x, (H, W))`` returns the tokens and their new ``(H, W)``."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float, qkv_bias: bool,
                 qk_scale: Optional[float], drop: float, attn_drop: float, drop_path: Sequence[float],
                 downsample: bool):
        super().__init__()
        self.blocks = nn.LayerList([
            SwinTransformerBlock(dim, num_heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio, qkv_bias,
                                 qk_scale, drop, attn_drop, drop_path[i])
            for i in range(depth)])
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: paddle.Tensor, size: Tuple[int, int]) -> Tuple[paddle.Tensor, Tuple[int, int]]:
        for block in self.blocks:
            x = block(x, size)
        if self.downsample is None:
            return x, size
        return self.downsample(x, size), ((size[0] + 1) // 2, (size[1] + 1) // 2)


class PatchEmbed(nn.Layer):
    """Strided conv over the image padded to a multiple of the patch, then LayerNorm (``patch_norm``);
    returns the tokens ``[B, N, C]`` and the patch grid ``(H, W)``."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int, patch_norm: bool, pad: bool = True):
        super().__init__()
        self.patch_size, self.pad = patch_size, pad
        self.proj = nn.Conv2D(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if patch_norm else None

    def forward(self, x: paddle.Tensor) -> Tuple[paddle.Tensor, Tuple[int, int]]:
        if self.pad:
            x = pad_to_multiple(x, self.patch_size, channels_last=False)
        x = self.proj(x)
        size = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose([0, 2, 1])
        return (self.norm(x) if self.norm is not None else x), size


def _check_bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"expected true or false, got {value!r}")
    return value


class SwinTransformer(ArchModel):
    """Swin Transformer backbone + classifier; subclasses fix the architecture.

    Args:
        class_num: classifier width.
        img_size: the size ``ape`` sizes its position embedding for (no other effect).
        patch_size / in_chans: patch embedding.
        mlp_ratio / qkv_bias / qk_scale: block details (PaddleClas's defaults 4, true, head_dim ** -0.5).
        drop_rate / attn_drop_rate / drop_path_rate: dropout, attention dropout, stochastic depth
            (linear from 0 over all blocks; default the variant's: 0.2 / 0.3 / 0.5 / 0.1 for
            tiny / small / base / large, as PaddleClas sets them).
        ape: add a learned absolute position embedding (fixes the input size to ``img_size``).
        patch_norm: LayerNorm after the patch embedding.
        use_checkpoint: accepted, no effect (PaddleClas stores it and never reads it).
        use_fused_attn / use_fused_linear: accepted, no effect (CUDA kernels for the same math).
        use_imagenet22k_pretrained / use_imagenet22kto1k_pretrained: accepted, no effect (they
            choose which file PaddleClas downloads; ppfreeze loads ``pretrained`` from a path).
    """
    embed_dim: int = 96
    depths: Tuple[int, ...] = (2, 2, 6, 2)
    num_heads: Tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7
    default_img_size: int = 224
    default_drop_path_rate: float = 0.1

    def __init__(self, class_num: int = 1000, img_size: Optional[int] = None, patch_size: int = 4, in_chans: int = 3,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_scale: Optional[float] = None,
                 drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: Optional[float] = None,
                 ape: bool = False, patch_norm: bool = True, use_checkpoint: bool = False,
                 use_fused_attn: bool = False, use_fused_linear: bool = False,
                 use_imagenet22k_pretrained: bool = False, use_imagenet22kto1k_pretrained: bool = False):
        super().__init__()
        class_num = check_class_num(class_num)
        img_size = check_positive_int(self.default_img_size if img_size is None else img_size, "img_size")
        patch_size = check_positive_int(patch_size, "patch_size")
        in_chans = check_positive_int(in_chans, "in_chans")
        mlp_ratio = float(to_number(mlp_ratio, "mlp_ratio"))
        qkv_bias, ape, patch_norm = (_check_bool(v, k) for v, k in
                                     ((qkv_bias, "qkv_bias"), (ape, "ape"), (patch_norm, "patch_norm")))
        qk_scale = None if qk_scale is None else float(to_number(qk_scale, "qk_scale"))
        drop_rate = check_rate(drop_rate, "drop_rate")
        attn_drop_rate = check_rate(attn_drop_rate, "attn_drop_rate")
        drop_path_rate = check_rate(self.default_drop_path_rate if drop_path_rate is None else drop_path_rate,
                                    "drop_path_rate")
        for key, value in (("use_checkpoint", use_checkpoint),
                           ("use_imagenet22k_pretrained", use_imagenet22k_pretrained),
                           ("use_imagenet22kto1k_pretrained", use_imagenet22kto1k_pretrained)):
            _check_bool(value, key)
        accept_fused_flags(use_fused_attn, use_fused_linear)
        num_layers = len(self.depths)
        dpr = drop_path_rates(drop_path_rate, sum(self.depths))

        self.patch_embed = PatchEmbed(patch_size, in_chans, self.embed_dim, patch_norm)
        if ape:
            grid = img_size // patch_size
            self.absolute_pos_embed = self.create_parameter([1, grid * grid, self.embed_dim],
                                                            attr=param_attr(initializer=trunc_normal()))
        else:
            self.absolute_pos_embed = None
        self.pos_drop = nn.Dropout(p=drop_rate)
        self.layers = nn.LayerList()
        for i in range(num_layers):
            start = sum(self.depths[:i])
            self.layers.append(BasicLayer(
                self.embed_dim * 2 ** i, self.depths[i], self.num_heads[i], self.window_size, mlp_ratio, qkv_bias,
                qk_scale, drop_rate, attn_drop_rate, dpr[start:start + self.depths[i]], downsample=i < num_layers - 1))
        num_features = self.embed_dim * 2 ** (num_layers - 1)
        self.norm = nn.LayerNorm(num_features)
        self.avgpool = nn.AdaptiveAvgPool1D(1)
        self.head = linear(num_features, class_num)

        self.class_num = class_num
        self.num_features = num_features
        if ape:
            self.input_size = self.min_input_size = img_size
        stem = ["patch_embed"] + (["absolute_pos_embed"] if ape else []) + ["pos_drop"]
        self.stages = _stages(stem, [[f"layers.{i}"] for i in range(num_layers)], ["norm", "avgpool", "head"])

    def forward_features(self, x: paddle.Tensor) -> paddle.Tensor:
        """Pooled features ``[B, num_features]``."""
        x, size = self.patch_embed(x)
        if self.absolute_pos_embed is not None:
            x = x + self.absolute_pos_embed
        x = self.pos_drop(x)
        for layer in self.layers:
            x, size = layer(x, size)
        x = self.avgpool(self.norm(x).transpose([0, 2, 1]))
        return paddle.flatten(x, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.head(self.forward_features(x))


def _stages(stem: List[str], trunk: List[List[str]], head: List[str]) -> Dict[str, List[str]]:
    stages: Dict[str, List[str]] = OrderedDict(stem=stem)
    for i, units in enumerate(trunk, 1):
        stages[f"stage{i}"] = units
    stages["head"] = head
    return stages


@MODELS.register
class SwinTransformer_tiny_patch4_window7_224(SwinTransformer):
    embed_dim, depths, num_heads, window_size = 96, (2, 2, 6, 2), (3, 6, 12, 24), 7
    default_drop_path_rate = 0.2


@MODELS.register
class SwinTransformer_small_patch4_window7_224(SwinTransformer):
    embed_dim, depths, num_heads, window_size = 96, (2, 2, 18, 2), (3, 6, 12, 24), 7
    default_drop_path_rate = 0.3


@MODELS.register
class SwinTransformer_base_patch4_window7_224(SwinTransformer):
    embed_dim, depths, num_heads, window_size = 128, (2, 2, 18, 2), (4, 8, 16, 32), 7
    default_drop_path_rate = 0.5


@MODELS.register
class SwinTransformer_base_patch4_window12_384(SwinTransformer):
    embed_dim, depths, num_heads, window_size, default_img_size = 128, (2, 2, 18, 2), (4, 8, 16, 32), 12, 384
    default_drop_path_rate = 0.5


@MODELS.register
class SwinTransformer_large_patch4_window7_224(SwinTransformer):
    embed_dim, depths, num_heads, window_size = 192, (2, 2, 18, 2), (6, 12, 24, 48), 7


@MODELS.register
class SwinTransformer_large_patch4_window12_384(SwinTransformer):
    embed_dim, depths, num_heads, window_size, default_img_size = 192, (2, 2, 18, 2), (6, 12, 24, 48), 12, 384


# --- SOLIDER (Chen et al. 2023): human-centric Swin with a semantic controller -------------------

class SoliderPatchMerging(nn.Layer):
    """2x2 patch merging by ``unfold`` (channel-major order: c0 of the 4 pixels, then c1, ...)
    -> LayerNorm -> Linear 4C -> 2C. Keys ``norm`` then ``reduction``, as in PaddleClas."""

    def __init__(self, dim: int):
        super().__init__()
        self.sampler = nn.Unfold(kernel_sizes=2, strides=2)
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias_attr=False)

    def forward(self, x: paddle.Tensor, size: Tuple[int, int]) -> paddle.Tensor:
        h, w = size
        b, _, c = x.shape
        x = self.sampler(x.reshape([b, h, w, c]).transpose([0, 3, 1, 2])).transpose([0, 2, 1])
        return self.reduction(self.norm(x))


class SoliderLayer(BasicLayer):
    """A SOLIDER stage at a fixed resolution; ``forward(x)`` returns (downsampled, pre-downsample) tokens."""

    def __init__(self, resolution: Tuple[int, int], dim: int, downsample: bool, **kwargs):
        super().__init__(dim, downsample=False, **kwargs)
        self.resolution = resolution
        self.downsample = SoliderPatchMerging(dim) if downsample else None

    def forward(self, x: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor]:
        for block in self.blocks:
            x = block(x, self.resolution)
        return (self.downsample(x, self.resolution) if self.downsample is not None else x), x


class SwinTransformer_SOLIDER(ArchModel):
    """SOLIDER's Swin at 224x224: the classifier reads the normalised, pooled last stage, and a
    semantic weight ``s`` modulates the tokens between stages (``x * softplus(W [s, 1-s]) + B [s, 1-s]``).

    PaddleClas's file cannot run a forward (its stage calls its blocks without their size, and it
    moves the semantic weight with ``.cuda()``); this model does what that code evidently
    intends, at the fixed size its stages are built for. Its state dict is PaddleClas's, including
    the parameters no classification output depends on (also unused there): ``norm`` (a
    LayerNorm(768) left by PaddleClas's constructor), ``norm0..norm2`` (multi-scale outputs
    for dense tasks) and ``semantic_embed_w.3`` / ``semantic_embed_b.3`` (applied after the last
    stage, to tokens nothing reads).

    Args:
        class_num: classifier width.
        in_chans: image channels.
        qkv_bias / qk_scale / drop_rate / attn_drop_rate / drop_path_rate: as in SwinTransformer.
        semantic_weight: the controller's ``s`` (PaddleClas's default 1.0); negative: no controller.
        use_checkpoint: accepted, no effect.
    """
    embed_dim: int = 96
    depths: Tuple[int, ...] = (2, 2, 6, 2)
    num_heads: Tuple[int, ...] = (3, 6, 12, 24)
    default_drop_path_rate: float = 0.2
    img_size, patch_size, window_size, mlp_ratio = 224, 4, 7, 4.0

    def __init__(self, class_num: int = 1000, in_chans: int = 3, qkv_bias: bool = True,
                 qk_scale: Optional[float] = None, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: Optional[float] = None, semantic_weight: float = 1.0, use_checkpoint: bool = False):
        super().__init__()
        class_num = check_class_num(class_num)
        in_chans = check_positive_int(in_chans, "in_chans")
        qkv_bias = _check_bool(qkv_bias, "qkv_bias")
        _check_bool(use_checkpoint, "use_checkpoint")
        qk_scale = None if qk_scale is None else float(to_number(qk_scale, "qk_scale"))
        drop_rate = check_rate(drop_rate, "drop_rate")
        attn_drop_rate = check_rate(attn_drop_rate, "attn_drop_rate")
        drop_path_rate = check_rate(self.default_drop_path_rate if drop_path_rate is None else drop_path_rate,
                                    "drop_path_rate")
        self.semantic_weight = float(to_number(semantic_weight, "semantic_weight"))
        num_layers = len(self.depths)
        widths = [self.embed_dim * 2 ** i for i in range(num_layers)]
        grid = self.img_size // self.patch_size
        dpr = drop_path_rates(drop_path_rate, sum(self.depths))

        # registration order = PaddleClas's state-dict order
        self.patch_embed = PatchEmbed(self.patch_size, in_chans, self.embed_dim, patch_norm=True, pad=False)
        self.pos_drop = nn.Dropout(p=0.0)  # PaddleClas's constructor leaves it at 0 whatever drop_rate is
        self.layers = nn.LayerList()
        for i in range(num_layers):
            start = sum(self.depths[:i])
            self.layers.append(SoliderLayer(
                (grid // 2 ** i,) * 2, widths[i], downsample=i < num_layers - 1, depth=self.depths[i],
                num_heads=self.num_heads[i], window=self.window_size, mlp_ratio=self.mlp_ratio, qkv_bias=qkv_bias,
                qk_scale=qk_scale, drop=drop_rate, attn_drop=attn_drop_rate,
                drop_path=dpr[start:start + self.depths[i]]))
        self.norm = nn.LayerNorm(768)  # unused: see the class docstring
        self.avgpool = nn.AdaptiveAvgPool2D(1)
        self.head = nn.Linear(widths[-1], class_num)
        for i in range(num_layers):
            self.add_sublayer(f"norm{i}", nn.LayerNorm(widths[i]))
        if self.semantic_weight >= 0:
            # stage i's controller maps [s, 1-s] to the width of stage i + 1 (the last reuses stage 3's)
            out = [widths[min(i, num_layers - 2) + 1] for i in range(num_layers)]
            self.semantic_embed_w = nn.LayerList([linear(2, d) for d in out])
            self.semantic_embed_b = nn.LayerList([linear(2, d) for d in out])
            self.softplus = nn.Softplus()

        self.class_num = class_num
        self.num_features = widths[-1]
        self.input_size = self.min_input_size = self.img_size
        self.stages = self._stages(num_layers)
        # kept for PaddleClas's keys but never read by the classification forward (its own
        # forward does not read them either): keep them out of the optimizer explicitly
        unused = [self.norm] + [getattr(self, f"norm{i}") for i in range(num_layers - 1)]
        if self.semantic_weight >= 0:
            unused += [self.semantic_embed_w[num_layers - 1], self.semantic_embed_b[num_layers - 1]]
        for layer in unused:
            for p in layer.parameters():
                p.stop_gradient = True

    def _stages(self, num_layers: int) -> Dict[str, List[str]]:
        """Stage i+1 starts with the controller of stage i (it modulates the tokens stage i+1
        reads) and norm<i> (a side output of stage i): the units stay in forward order."""
        def side(i: int) -> List[str]:
            names = [f"norm{i}.weight", f"norm{i}.bias"]
            if self.semantic_weight >= 0:
                names = [f"semantic_embed_{t}.{i}.{p}" for t in "wb" for p in ("weight", "bias")] + names
            return names
        trunk = [["layers.0"]] + [side(i - 1) + [f"layers.{i}"] for i in range(1, num_layers)]
        return _stages(["patch_embed", "pos_drop"], trunk, side(num_layers - 1) + ["norm", "avgpool", "head"])

    def forward_features(self, x: paddle.Tensor) -> paddle.Tensor:
        x, _ = self.patch_embed(x)
        x = self.pos_drop(x)
        if self.semantic_weight >= 0:
            s = paddle.full([x.shape[0], 1], self.semantic_weight, dtype=x.dtype)
            s = paddle.concat([s, 1 - s], axis=-1)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x, out = layer(x)
            if self.semantic_weight >= 0 and i < last:  # after the last stage nothing reads x
                x = x * self.softplus(self.semantic_embed_w[i](s).unsqueeze(1)) + \
                    self.semantic_embed_b[i](s).unsqueeze(1)
        side = self.layers[last].resolution
        out = getattr(self, f"norm{last}")(out).reshape([-1, side[0], side[1], self.num_features])
        return paddle.flatten(self.avgpool(out.transpose([0, 3, 1, 2])), 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.head(self.forward_features(x))


@MODELS.register
class SwinTransformer_tiny_patch4_window7_224_SOLIDER(SwinTransformer_SOLIDER):
    embed_dim, depths, num_heads, default_drop_path_rate = 96, (2, 2, 6, 2), (3, 6, 12, 24), 0.2


@MODELS.register
class SwinTransformer_small_patch4_window7_224_SOLIDER(SwinTransformer_SOLIDER):
    embed_dim, depths, num_heads, default_drop_path_rate = 96, (2, 2, 18, 2), (3, 6, 12, 24), 0.3


@MODELS.register
class SwinTransformer_base_patch4_window7_224_SOLIDER(SwinTransformer_SOLIDER):
    embed_dim, depths, num_heads, default_drop_path_rate = 128, (2, 2, 18, 2), (4, 8, 16, 32), 0.5
