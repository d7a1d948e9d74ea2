"""Visual prompt tuning (Jia et al. 2022, arXiv:2203.12119) for ViT-family models.

The model must have PaddleClas's ViT layout: ``patch_embed``, ``cls_token`` (and DeiT's
``dist_token``), ``pos_embed`` and ``blocks`` (``blocks.0`` .. ``blocks.N-1``) run in that
order on ``[B, tokens, dim]``. ``num_tokens`` prompt tokens go in right after the class (and
distillation) tokens, before ``blocks.0``: *shallow* prompts once, *deep* prompts replace them
with a new set before every block. The head still reads the class token, so the output shape is
unchanged.

Nothing is renamed: the prompts live in a new sublayer ``prompt`` (key ``prompt.tokens``,
``[1 or N, num_tokens, dim]``), registered and listed in ``stages`` just before ``blocks``
(forward order: the frozen patch embedding before it can still be cut), and forward pre-hooks
on the blocks insert them. The hooks are callable objects holding the prompt layer, so a deep
copy (the exporter's) carries working hooks.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from fnmatch import fnmatchcase
from typing import List, Optional, Sequence, Tuple

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...config.errors import ConfigError

PROMPT = "prompt"
LAYOUT = ("patch_embed", "cls_token", "pos_embed", "blocks")


class VisualPrompt(nn.Layer):
    """Prompt tokens ``[depth, num_tokens, dim]`` (depth 1: shallow) and how to insert them."""

    def __init__(self, depth: int, num_tokens: int, dim: int, prefix_tokens: int, dropout: float, bound: float):
        super().__init__()
        self.num_tokens, self.prefix_tokens, self.dropout = num_tokens, prefix_tokens, dropout
        self.tokens = self.create_parameter([depth, num_tokens, dim],
                                            default_initializer=nn.initializer.Uniform(-bound, bound))

    @property
    def deep(self) -> bool:
        return self.tokens.shape[0] > 1

    def insert(self, x: paddle.Tensor, block_index: int) -> paddle.Tensor:
        """Tokens entering block ``block_index``: prompts inserted (block 0) or replaced (deep)."""
        # broadcast against a [B, 1, 1] zero: hooks are not converted by to_static, where x.shape[0]
        # of a dynamic batch would read -1
        prompts = self.tokens[block_index].unsqueeze(0).astype(x.dtype) + paddle.zeros_like(x[:, :1, :1])
        if self.dropout > 0:
            prompts = F.dropout(prompts, self.dropout, training=self.training)
        head, p = x[:, : self.prefix_tokens], self.prefix_tokens
        rest = x[:, p:] if block_index == 0 else x[:, p + self.num_tokens:]
        return paddle.concat([head, prompts, rest], axis=1)


class PromptHook:
    """Forward pre-hook of ``blocks.<i>``: hands the block its input with the prompts in."""

    def __init__(self, prompt: VisualPrompt, block_index: int):
        self.prompt = prompt
        self.block_index = block_index

    def __call__(self, layer: nn.Layer, inputs: Tuple[paddle.Tensor, ...]) -> Tuple[paddle.Tensor, ...]:
        return (self.prompt.insert(inputs[0], self.block_index),) + tuple(inputs[1:])


def find_vit(model: nn.Layer, select: Sequence[str], key: str) -> Tuple[str, nn.Layer]:
    """(name, layer) of the first layer (the model or a sublayer) with the ViT layout, restricted
    to sublayer names ``select`` matches when given."""
    candidates = [("", model)] + list(model.named_sublayers())
    if select:
        candidates = [(n, l) for n, l in candidates if any(fnmatchcase(n, p) for p in select)]
    for name, layer in candidates:
        if _has_vit_layout(layer):
            return name, layer
    where = f"among the sublayers {list(select)} selects" if select else "in the model"
    raise ConfigError(f"{key}.method", f"vpt needs a ViT-family model, and no layer {where} has the ViT layout "
                                       f"({', '.join(LAYOUT)})",
                      "use vpt with ViT / DeiT backbones (Swin has no class token); select names the "
                      "sublayer holding it, e.g. select: [backbone]")


def _has_vit_layout(layer: nn.Layer) -> bool:
    blocks = layer._sub_layers.get("blocks")
    return (isinstance(layer._sub_layers.get("patch_embed"), nn.Layer) and isinstance(blocks, nn.Layer)
            and len(list(blocks.children())) > 0 and "cls_token" in layer._parameters
            and "pos_embed" in layer._parameters)


def add_prompts(model: nn.Layer, select: Sequence[str], num_tokens: int, deep: bool, dropout: float,
                key: str) -> Tuple[str, List[str]]:
    """Give the ViT inside ``model`` prompts; returns (prompt layer name, added parameter names)."""
    where, vit = find_vit(model, select, key)
    prefix = f"{where}." if where else ""
    existing = vit._sub_layers.get(PROMPT)
    if isinstance(existing, VisualPrompt):  # a second plan on the same model
        return prefix + PROMPT, [f"{prefix}{PROMPT}.tokens"]
    if existing is not None or hasattr(vit, PROMPT):
        raise ConfigError(f"{key}.method", f"'{prefix}{PROMPT}' already exists in the model: vpt cannot add its prompts")
    blocks = list(vit._sub_layers["blocks"].children())
    dim = int(vit.cls_token.shape[-1])
    prefix_tokens = 1 + int("dist_token" in vit._parameters)
    prompt = VisualPrompt(len(blocks) if deep else 1, num_tokens, dim, prefix_tokens, dropout,
                          _init_bound(vit._sub_layers["patch_embed"], dim))
    _register_before(vit, PROMPT, prompt, "blocks")
    for index in range(len(blocks) if deep else 1):
        blocks[index].register_forward_pre_hook(PromptHook(prompt, index))
    _list_in_stages(model, where, f"{PROMPT}", "blocks.0")
    return prefix + PROMPT, [f"{prefix}{PROMPT}.tokens"]


def _init_bound(patch_embed: nn.Layer, dim: int) -> float:
    # VPT's initialisation: uniform(+-sqrt(6 / (3 * patch_area + dim)))
    conv = next((l for l in [patch_embed] + list(patch_embed.sublayers()) if isinstance(l, nn.Conv2D)), None)
    area = int(conv._kernel_size[0] * conv._kernel_size[1]) if conv is not None else 1
    return math.sqrt(6.0 / (3 * area + dim))


def _register_before(parent: nn.Layer, name: str, layer: nn.Layer, before: str) -> None:
    """Register ``layer`` as ``parent.<name>`` just before ``before`` (registration order = forward order)."""
    parent.add_sublayer(name, layer)
    items = list(parent._sub_layers.items())
    moved = [(n, l) for n, l in items if n != name]
    position = next(i for i, (n, _) in enumerate(moved) if n == before)
    moved.insert(position, (name, layer))
    parent._sub_layers.clear()
    parent._sub_layers.update(moved)


def _list_in_stages(model: nn.Layer, where: str, unit: str, before: str) -> None:
    """Insert ``unit`` before ``before`` in the ``stages`` of the ViT and of every layer above it."""
    parts = where.split(".") if where else []
    layer: Optional[nn.Layer] = model
    for depth in range(len(parts) + 1):
        rel = ".".join(parts[depth:])
        prefix = f"{rel}." if rel else ""
        stages = getattr(layer, "stages", None)
        if isinstance(stages, dict):
            updated = OrderedDict((s, list(u)) for s, u in stages.items())
            target = prefix + before
            for units in updated.values():
                # the unit holding blocks.0: blocks.0 itself, or a coarser one such as 'blocks'
                hit = next((i for i, u in enumerate(units) if target == u or target.startswith(u + ".")), None)
                if hit is not None:
                    units.insert(hit, prefix + unit)
                    break
            layer.stages = updated
        if depth < len(parts):
            layer = layer._sub_layers[parts[depth]]
