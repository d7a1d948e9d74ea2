"""Transformer backbones (ViT, DeiT, foundation ViTs, Swin): freezing by block, outputs and
arguments that test_zoo's generic checks do not cover. Numerical parity with PaddleClas is
checked by tools/dev/compare_with_paddleclas.py (it needs a PaddleClas checkout)."""
import numpy as np
import paddle
import pytest

from ppfreeze.arch import build_model
from ppfreeze.arch.backbone.swin_transformer import shifted_window_mask
from ppfreeze.arch.backbone.transformer_layers import block_stages, relative_position_index
from ppfreeze.config.errors import ConfigError
from ppfreeze.freeze import build_freeze_plan


def _images(size, batch=2, seed=0):
    return paddle.to_tensor(np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype("float32"))


def test_freeze_until_a_block_freezes_the_stem_tokens_and_the_blocks_before_it_and_cuts_there():
    model = build_model({"name": "DeiT_tiny_distilled_patch16_224", "class_num": 3})
    plan = build_freeze_plan({"until": "blocks.7", "allow_random_frozen": True}, model)
    plan.apply(model, 1)
    frozen = set(plan.frozen_tensor_names(1))
    assert {"cls_token", "dist_token", "pos_embed", "patch_embed.proj.weight"} <= frozen
    assert "blocks.7.mlp.fc2.bias" in frozen and not any(n.startswith("blocks.8.") for n in frozen)
    assert plan.current.cut_boundary == "blocks.7"
    trainable = {n for n, p in model.named_parameters() if not p.stop_gradient}
    assert trainable and all(n.startswith(("blocks.8.", "blocks.9.", "blocks.10.", "blocks.11.", "norm.", "head"))
                             for n in trainable)


def test_vit_stages_split_the_blocks_into_four_groups():
    with paddle.LazyGuard():
        large = build_model({"name": "ViT_large_patch16_224", "class_num": 3})
    assert large.stages["stem"] == ["patch_embed", "cls_token", "pos_embed", "pos_drop"]
    assert [len(large.stages[f"stage{i}"]) for i in range(1, 5)] == [6, 6, 6, 6]
    assert large.stages["stage4"][-1] == "blocks.23" and large.stages["head"] == ["norm", "head"]
    assert [len(v) for v in block_stages([], 10, []).values()] == [0, 2, 3, 3, 2, 0]  # uneven depths: near-equal groups


def test_distilled_deit_returns_the_mean_of_both_heads_in_train_and_eval():
    paddle.seed(0)
    model = build_model({"name": "DeiT_tiny_distilled_patch16_224", "class_num": 4})
    x = _images(224)
    for train in (True, False):
        model.train() if train else model.eval()
        with paddle.no_grad():
            tokens = model.forward_features(x)
            expected = (model.head(tokens[:, 0]) + model.head_dist(tokens[:, 1])) / 2
            out = model(x)
        assert out.shape == [2, 4]
        np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)


def test_vit_refuses_another_input_size_naming_the_native_one():
    model = build_model({"name": "DeiT_tiny_patch16_224", "class_num": 2})
    assert model.input_size == 224
    with pytest.raises(ValueError, match="fixed to 224x224"):
        model(_images(64))


def test_foundation_vit_return_embed_gives_projected_tokens_and_no_classifier():
    paddle.seed(0)
    model = build_model({"name": "MOCOV3_vit_small", "return_embed": True})
    assert model.class_num is None and model.num_features == 512
    assert [n for n, _ in model.named_sublayers() if n.startswith("head")] == ["head"]
    model.eval()
    x = _images(32)  # any size: the position embedding is resized
    with paddle.no_grad():
        tokens = model(x)
        assert tokens.shape == [2, 1 + 2 * 2, 512]
        mean = build_model({"name": "MOCOV3_vit_small", "return_embed": True, "return_mean_embed": True})
        mean.set_state_dict(model.state_dict())
        mean.eval()
        np.testing.assert_allclose(mean(x).numpy(), tokens.numpy().mean(1), rtol=1e-5, atol=1e-6)


def test_foundation_vit_head_init_scale_shrinks_the_initial_classifier():
    paddle.seed(0)
    small = build_model({"name": "MOCOV3_vit_small", "class_num": 50}).head.fc_head.weight.numpy()
    paddle.seed(0)
    unit = build_model({"name": "MOCOV3_vit_small", "class_num": 50, "head_init_scale": 1.0}).head.fc_head.weight
    assert 1e-5 < small.std() < 3e-5 and 0.015 < unit.numpy().std() < 0.025  # std 0.02 * scale


def test_beit_style_models_fix_the_input_size_and_the_others_do_not():
    with paddle.LazyGuard():
        beit = build_model({"name": "BEiTv2_vit_base_patch16_224", "class_num": 3})
        clip = build_model({"name": "CLIP_vit_base_patch16_224", "class_num": 3})
    assert beit.input_size == 224 and "pos_embed" not in beit.state_dict()
    assert clip.input_size is None and clip.stages["stem"][-2:] == ["ln_pre", "pos_drop"]


def test_relative_position_index_with_class_token_uses_the_three_extra_entries():
    plain = relative_position_index((2, 2))
    assert plain.shape == (4, 4) and plain.min() == 0 and plain.max() == 8 and (np.diag(plain) == 4).all()
    full = relative_position_index((2, 2), with_cls_token=True)
    assert full.shape == (5, 5) and full[0, 0] == 11 and (full[0, 1:] == 9).all() and (full[1:, 0] == 10).all()
    np.testing.assert_array_equal(full[1:, 1:], plain)


def test_shifted_window_mask_separates_tokens_the_roll_brought_together():
    mask = shifted_window_mask(4, 4, 2, 1)
    assert mask.shape == (4, 4, 4)
    assert not mask[0].any()                   # the top-left window is one region
    assert (mask == -100).any(axis=(1, 2)).tolist() == [False, True, True, True]
    np.testing.assert_array_equal(mask, mask.transpose(0, 2, 1))


def test_swin_runs_at_sizes_that_need_padding_like_paddleclas():
    paddle.seed(0)
    model = build_model({"name": "SwinTransformer_tiny_patch4_window7_224", "class_num": 3})
    assert model.input_size is None and model.stages["stage3"] == ["layers.2"]
    model.eval()
    with paddle.no_grad():
        assert model(_images(50, batch=1)).shape == [1, 3]


def test_swin_ape_fixes_the_input_size():
    with paddle.LazyGuard():
        model = build_model({"name": "SwinTransformer_tiny_patch4_window7_224", "class_num": 3, "ape": True})
    assert model.input_size == 224 and model.stages["stem"] == ["patch_embed", "absolute_pos_embed", "pos_drop"]


@pytest.mark.parametrize("cfg, key", [
    ({"name": "DeiT_tiny_patch16_224", "drop_path_rate": 1.5}, "Arch.drop_path_rate"),
    ({"name": "MOCOV3_vit_small", "class_num": 0}, "Arch.class_num"),
    ({"name": "CLIP_vit_base_patch16_224", "use_fused_attn": "yes"}, "Arch.use_fused_attn"),
    ({"name": "SwinTransformer_tiny_patch4_window7_224", "window_size": 12}, "Arch.window_size"),
])
def test_bad_arguments_are_config_errors_naming_the_key(cfg, key):
    with pytest.raises(ConfigError) as err, paddle.LazyGuard():
        build_model(cfg)
    assert err.value.key == key
