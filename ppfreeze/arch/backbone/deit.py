"""DeiT (Touvron et al. 2020), PaddleClas layout (``model_zoo/distilled_vision_transformer.py``).

The plain DeiT variants are PaddleClas's ViT (``vision_transformer.py``) at other widths. The
distilled ones add a distillation token and a second head:

    pos_embed [1, 2+N, C], cls_token, dist_token [1, 1, C]
    patch_embed / blocks.<i> / norm as in ViT
    head.weight / bias, head_dist.weight / bias

Output: PaddleClas's distilled model returns ``(head(class token) + head_dist(dist token)) / 2``
in training *and* in eval (it has no separate training output), so the forward here is that
average in both modes: ``[N, class_num]`` logits. Hard distillation against a teacher would
need the two heads apart; PaddleClas does not provide it and neither does this model.

Stages: ``stem`` = patch_embed, cls_token, dist_token, pos_embed, pos_drop; ``stage1..4`` =
blocks 0-2, 3-5, 6-8, 9-11; ``head`` = norm, head, head_dist.
"""
from __future__ import annotations

from typing import Optional

import paddle

from ..registry import MODELS
from .transformer_layers import block_stages, linear
from .vision_transformer import VisionTransformer


class DistilledVisionTransformer(VisionTransformer):
    """DeiT with a distillation token; same arguments as :class:`VisionTransformer`."""
    num_extra_tokens = 2  # class and distillation tokens

    def __init__(self, class_num: int = 1000, img_size: Optional[int] = None, in_chans: int = 3,
                 qk_scale: Optional[float] = None, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0):
        super().__init__(class_num=class_num, img_size=img_size, in_chans=in_chans, qk_scale=qk_scale,
                         drop_rate=drop_rate, attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate)
        self.dist_token = self._token_param(1)  # after pos_embed and cls_token, as in PaddleClas
        self.head_dist = linear(self.embed_dim, self.class_num)
        self.stages = block_stages(["patch_embed", "cls_token", "dist_token", "pos_embed", "pos_drop"],
                                   self.depth, ["norm", "head", "head_dist"])

    def _tokens(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.patch_embed(x)
        batch = x.shape[0]
        cls_token = self.cls_token.expand([batch, -1, -1]).astype(x.dtype)
        dist_token = self.dist_token.expand([batch, -1, -1]).astype(x.dtype)
        return paddle.concat([cls_token, dist_token, x], axis=1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.forward_features(x)
        return (self.head(x[:, 0]) + self.head_dist(x[:, 1])) / 2


@MODELS.register
class DeiT_tiny_patch16_224(VisionTransformer):
    embed_dim, depth, num_heads = 192, 12, 3


@MODELS.register
class DeiT_small_patch16_224(VisionTransformer):
    embed_dim, depth, num_heads = 384, 12, 6


@MODELS.register
class DeiT_base_patch16_224(VisionTransformer):
    embed_dim, depth, num_heads = 768, 12, 12


@MODELS.register
class DeiT_base_patch16_384(VisionTransformer):
    embed_dim, depth, num_heads, default_img_size = 768, 12, 12, 384


@MODELS.register
class DeiT_tiny_distilled_patch16_224(DistilledVisionTransformer):
    embed_dim, depth, num_heads = 192, 12, 3


@MODELS.register
class DeiT_small_distilled_patch16_224(DistilledVisionTransformer):
    embed_dim, depth, num_heads = 384, 12, 6


@MODELS.register
class DeiT_base_distilled_patch16_224(DistilledVisionTransformer):
    embed_dim, depth, num_heads = 768, 12, 12


@MODELS.register
class DeiT_base_distilled_patch16_384(DistilledVisionTransformer):
    embed_dim, depth, num_heads, default_img_size = 768, 12, 12, 384
