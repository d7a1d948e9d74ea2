"""Freezing transformer-style models: LayerNorm policy, layer decay by block depth, attention FLOPs,
and the cut through token blocks (TinyViT in tests/_tiny_model.py mimics ViT's layout)."""
import os
import sys

import numpy as np
import paddle
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from _tiny_model import tiny_vit  # noqa: E402

from ppfreeze.config.errors import ConfigError  # noqa: E402
from ppfreeze.freeze import build_freeze_plan  # noqa: E402
from ppfreeze.freeze.flops import count_macs  # noqa: E402


def _x(seed=0):
    return paddle.to_tensor(np.random.default_rng(seed).standard_normal((2, 3, 16, 16)).astype("float32"))


def test_until_a_block_freezes_stem_and_earlier_blocks_and_cuts_there():
    model = tiny_vit()
    plan = build_freeze_plan({"until": "blocks.1", "allow_random_frozen": True}, model)
    plan.apply(model, 1)
    frozen = set(plan.current.frozen_names())
    assert {"cls_token", "pos_embed", "patch_embed.weight", "blocks.1.mlp.2.bias"} <= frozen
    assert not any(n.startswith("blocks.2.") or n.startswith("head.") for n in frozen)
    assert plan.current.cut_boundary == "blocks.1"
    out = model(_x())
    out.sum().backward()
    assert model.cls_token.grad is None and model.blocks[0].attn.qkv.weight.grad is None
    assert model.blocks[2].attn.qkv.weight.grad is not None


def test_ln_train_keeps_layernorm_affine_trainable_and_explains_the_lost_cut(caplog):
    model = tiny_vit()
    plan = build_freeze_plan({"until": "stage1", "ln": "train", "allow_random_frozen": True}, model)
    state = plan.state_at(1)
    assert not state.params["blocks.0.norm1.weight"].frozen and not state.params["blocks.1.norm2.bias"].frozen
    assert state.params["blocks.0.attn.qkv.weight"].frozen
    # a trainable LayerNorm inside the prefix means backward must run through it: no cut
    assert state.cut_boundary is None
    assert "ln: train" in " ".join(state.notes)
    with pytest.raises(ConfigError, match="Freeze.ln"):
        build_freeze_plan({"until": "stage1", "ln": "freeze_stats"}, tiny_vit())


def test_layer_decay_groups_the_stem_and_the_head_like_beit():
    model = tiny_vit()
    plan = build_freeze_plan({"layer_decay": 0.5}, model)
    mult = {p.name: p.lr_mult for p in plan.state_at(1).params.values()}
    # groups: stem (patch_embed, cls_token, pos_embed) | blocks.0 | blocks.1 | blocks.2 | head (norm, head)
    assert mult["head.weight"] == mult["norm.weight"] == 1.0
    assert mult["blocks.2.attn.qkv.weight"] == 0.5 and mult["blocks.0.norm1.bias"] == 0.125
    assert mult["cls_token"] == mult["pos_embed"] == mult["patch_embed.weight"] == 0.0625


def test_flops_count_attention_matmuls():
    model = tiny_vit()
    macs = count_macs(model, [3, 16, 16])
    tokens, dim = 5, 16
    assert macs["blocks.0.attn"] == 2 * tokens * tokens * dim  # q @ k^T and attn @ v
    assert macs["blocks.0.attn.qkv"] == tokens * dim * 3 * dim
    plan = build_freeze_plan({"until": "blocks.1", "allow_random_frozen": True}, model)
    report = plan.report(model, [3, 16, 16])
    frozen_attention = sum(macs[f"blocks.{i}.attn"] for i in (0, 1))
    total = sum(macs.values())
    assert report["flops"]["macs_total"] == total
    assert report["flops"]["macs_frozen"] >= frozen_attention + macs["patch_embed"]
    assert 0 < report["flops"]["no_backward_share"] < 1
