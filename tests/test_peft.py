"""PEFT as Freeze methods: LoRA (Linear and k x k Conv2D), BitFit, visual prompt tuning.

Claims checked: adapters add keys without renaming any base key (base weights still load); an
adapted model starts out as the base model; only the tensors a method claims to train change and
the audit proves the base unchanged; LoRA merges into a plain model with the base's structure
and size and the same outputs; the adapter file round-trips; resume is bit-identical, across a
milestone that unfreezes a base stage after LoRA (engine tests at the end).
"""
import os
import sys

import numpy as np
import paddle
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from _tiny_model import TinyViT, tiny_model, tiny_vit  # noqa: E402
from conftest import tiny_config  # noqa: E402

from ppfreeze.arch import MODELS, ArchModel  # noqa: E402
from ppfreeze.arch.base import reparameterized_copy  # noqa: E402
from ppfreeze.arch.pretrained import load_pretrained  # noqa: E402
from ppfreeze.config.errors import ConfigError  # noqa: E402
from ppfreeze.export import export_model, load_trained_tensors, save_trained_tensors  # noqa: E402
from ppfreeze.export.exporter import save_program  # noqa: E402
from ppfreeze.freeze import FreezeAudit, build_freeze_plan, format_report  # noqa: E402
from ppfreeze.freeze.peft import LoRAConv2D, LoRALinear, VisualPrompt  # noqa: E402

IMAGE = [3, 16, 16]


class TinyViTModel(TinyViT, ArchModel):
    """TinyViT keeping the model contract, so the engine can build it by name."""


def tiny_vit_for_tests(class_num: int = 5, image_size: int = 32) -> TinyViT:
    """TinyViT under the registry (the engine builds models by name); 32 px demo images."""
    model = TinyViTModel(num_classes=class_num, image_size=image_size)
    model.class_num, model.num_features = class_num, 16
    return model


if "TinyViTForTests" not in MODELS:
    MODELS.register(tiny_vit_for_tests, name="TinyViTForTests")


def batches(n=3, seed=1, classes=5):
    rng = np.random.RandomState(seed)
    return [(paddle.to_tensor(rng.randn(4, *IMAGE).astype("float32")),
             paddle.to_tensor(rng.randint(0, classes, (4,)).astype("int64"))) for _ in range(n)]


def train(model, plan, steps=3, classes=5):
    plan.apply(model)
    optimizer = paddle.optimizer.Momentum(0.1, momentum=0.9, parameters=[p for _, p in plan.optimizer_parameters(model)],
                                          weight_decay=paddle.regularizer.L2Decay(1e-4))
    model.train()
    for x, y in batches(steps, classes=classes):
        paddle.nn.functional.cross_entropy(model(x), y).backward()
        plan.after_backward(model)
        optimizer.step()
        optimizer.clear_grad()


def audited_train(model, plan):
    """``train`` under a FreezeAudit, which fails if any frozen tensor (BN statistics too) is not
    bit-identical after the steps; returns the state before training."""
    audit = FreezeAudit(model, plan)
    plan.apply(model)
    audit.snapshot()
    before = snapshot(model)
    train(model, plan)
    audit.check("after 3 steps")
    return before


def snapshot(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def changed(before, model):
    after = snapshot(model)
    return {k for k in before if not np.array_equal(before[k], after[k])}


def plan_for(model, peft, **extra):
    return build_freeze_plan({"peft": peft, "allow_random_frozen": True, **extra}, model)


def n_params(model):
    """Every parameter value, BN running statistics included (Paddle stores them as parameters)."""
    return sum(int(np.prod(p.shape)) for p in model.parameters())


def n_weights(model):
    """Parameter values without BN running statistics (what the freeze report counts)."""
    return sum(int(np.prod(p.shape)) for n, p in model.named_parameters() if not n.endswith(("_mean", "_variance")))


# -- LoRA ------------------------------------------------------------------------------------------
def test_lora_adds_keys_renames_none_and_starts_as_the_base_model(tmp_path):
    model = tiny_vit()
    x = batches(1)[0][0]
    model.eval()
    base_out, base_keys = model(x).numpy(), list(model.state_dict())
    paddle.save(model.state_dict(), str(tmp_path / "base.pdparams"))
    plan_for(model, {"method": "lora", "select": ["blocks.*.attn.qkv", "blocks.*.mlp"], "rank": 2})
    keys = list(model.state_dict())
    added = [k for k in keys if k not in base_keys]
    assert [k for k in keys if k in base_keys] == base_keys  # nothing renamed, order kept
    assert set(added) == {f"blocks.{i}.{layer}.lora_{ab}" for i in range(3) for layer in ("attn.qkv", "mlp.0", "mlp.2")
                          for ab in "AB"}
    assert isinstance(model.blocks[0].attn.qkv, LoRALinear) and isinstance(model.blocks[0].attn.qkv, paddle.nn.Linear)
    assert np.array_equal(model(x).numpy(), base_out)  # B starts at zero
    report = load_pretrained(model, str(tmp_path / "base"))  # base weights still load, by the same names
    assert sorted(report.loaded) == sorted(base_keys) and sorted(report.missing) == sorted(added)


@pytest.mark.parametrize("build, peft, adapted", [
    (tiny_model, {"method": "lora", "select": ["blocks"], "rank": 2, "alpha": 4}, ["blocks.0.conv", "blocks.1.conv",
                                                                                   "blocks.2.conv"]),
    (tiny_vit, {"method": "lora", "select": ["blocks.*.attn"], "rank": 2, "dropout": 0.1},
     [f"blocks.{i}.attn.{p}" for i in range(3) for p in ("qkv", "proj")]),
])
def test_lora_trains_adapters_and_head_only_and_merges_exactly(build, peft, adapted):
    model = build()
    base_params, base_weights = n_params(model), n_weights(model)
    base_keys = list(model.state_dict())
    plan = plan_for(model, peft)
    head = [k for k in base_keys if k.startswith(("fc.", "head.", "norm."))]
    before = audited_train(model, plan)
    assert changed(before, model) == {f"{layer}.lora_{ab}" for layer in adapted for ab in "AB"} | set(head)
    report = plan.report(model, IMAGE)
    assert report["peft"]["params_added"] == n_weights(model) - base_weights
    assert report["peft"]["params_base"] == base_weights
    assert report["peft"]["params_trainable"] == report["params"]["trainable"]
    assert "peft Freeze.peft: lora on" in format_report(report)

    model.eval()
    x = batches(1, seed=9)[0][0]
    merged = reparameterized_copy(model)  # what the exporter saves
    assert list(merged.state_dict()) == base_keys and n_params(merged) == base_params
    assert not any(isinstance(layer, (LoRALinear, LoRAConv2D)) for layer in merged.sublayers())
    np.testing.assert_allclose(merged(x).numpy(), model(x).numpy(), rtol=0, atol=1e-5)
    assert np.abs(model.state_dict()[f"{adapted[0]}.lora_B"].numpy()).max() > 0  # LoRA did change the function


def test_lora_config_mistakes_name_the_key():
    with pytest.raises(ConfigError, match=r"Freeze\.peft\.select\.0: pattern 'norm' selects no Linear or Conv2D"):
        plan_for(tiny_vit(), {"method": "lora", "select": ["norm"]})
    with pytest.raises(ConfigError, match=r"Freeze\.peft\.select\.0: pattern 'blokcs\.\*'"):
        plan_for(tiny_vit(), {"method": "lora", "select": ["blokcs.*"]})
    with pytest.raises(ConfigError, match=r"Freeze\.peft\.train\.0"):
        plan_for(tiny_vit(), {"method": "lora", "select": ["blocks"], "train": ["classifier"]})
    with pytest.raises(ConfigError, match=r"Freeze\.peft\.method: vpt needs a ViT-family model"):
        plan_for(tiny_model(), "vpt")


def test_adapter_file_holds_only_what_trains_and_restores_the_finetuned_model(tmp_path):
    model = tiny_vit()
    paddle.save(model.state_dict(), str(tmp_path / "base.pdparams"))
    peft = {"method": "lora", "select": ["blocks.*.attn.qkv"], "rank": 2}
    plan = plan_for(model, peft)
    train(model, plan)
    names = save_trained_tensors(model, plan, str(tmp_path / "adapters.pdparams"))
    assert set(names) == {f"blocks.{i}.attn.qkv.lora_{ab}" for i in range(3) for ab in "AB"} | \
        {"norm.weight", "norm.bias", "head.weight", "head.bias"}

    other = tiny_vit(seed=5)  # another initialisation: everything must come from the two files
    other_plan = plan_for(other, peft)
    load_pretrained(other, str(tmp_path / "base"))
    load_trained_tensors(other, other_plan, str(tmp_path / "adapters.pdparams"))
    mine, theirs = snapshot(model), snapshot(other)
    assert all(np.array_equal(mine[k], theirs[k]) for k in mine)
    with pytest.raises(ConfigError, match="does not fit this model and Freeze plan"):
        load_trained_tensors(tiny_vit(), plan_for(tiny_vit(), "bitfit"), str(tmp_path / "adapters.pdparams"))


# -- BitFit -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("build", [tiny_model, tiny_vit])
def test_bitfit_trains_biases_norm_affines_and_head_only(build):
    model = build()
    plan = plan_for(model, "bitfit")
    before = audited_train(model, plan)
    norms = {n for n, layer in model.named_sublayers()
             if isinstance(layer, (paddle.nn.LayerNorm, paddle.nn.BatchNorm2D))}
    claimed = {k for k in before if k.endswith(".bias") or k.rsplit(".", 1)[0] in norms or k.startswith(("fc.", "head."))}
    claimed -= {k for k in before if k.endswith(("._mean", "._variance"))}  # BN statistics stay fixed
    assert changed(before, model) == claimed
    assert plan.report(model, IMAGE)["peft"]["params_added"] == 0


# -- VPT ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("deep", [False, True])
def test_vpt_trains_prompts_and_head_only(deep, tmp_path):
    model = tiny_vit()
    seen = []
    model.blocks[2].register_forward_pre_hook(lambda layer, inputs: seen.append(inputs[0].shape[1]))
    plan = plan_for(model, {"method": "vpt", "num_tokens": 3, "deep": deep})
    assert isinstance(model.prompt, VisualPrompt) and list(model.prompt.tokens.shape) == [3 if deep else 1, 3, 16]
    keys = list(model.state_dict())
    assert keys.index("prompt.tokens") == keys.index("blocks.0.norm1.weight") - 1  # registered before blocks
    assert plan.index.units.index("prompt") < plan.index.units.index("blocks.0")
    before = audited_train(model, plan)
    assert changed(before, model) == {"prompt.tokens", "norm.weight", "norm.bias", "head.weight", "head.bias"}
    assert seen[-1] == 1 + 4 + 3  # class token + 4 patches + 3 prompts reach every block
    model.eval()
    x = batches(1, seed=4)[0][0]
    copied = reparameterized_copy(model)  # the exporter's deep copy keeps working prompt hooks
    assert np.array_equal(copied(x).numpy(), model(x).numpy())
    if deep:  # and the exported static program runs them too (dynamic batch)
        save_program(copied, IMAGE, str(tmp_path))
        exported = paddle.jit.load(os.path.join(str(tmp_path), "inference"))
        np.testing.assert_allclose(exported(x).numpy(), model(x).numpy(), rtol=0, atol=1e-5)
    model.prompt.tokens.set_value(paddle.zeros_like(model.prompt.tokens) + 1.0)
    assert not np.array_equal(copied(x).numpy(), model(x).numpy())  # the copy's hooks use its own prompts


# -- through the engine: resume, schedule, export ----------------------------------------------------
def run_and_resume(tmp_path, cfg, name):
    from ppfreeze.engine import Engine
    Engine(cfg, "train").train()
    out = os.path.join(cfg["Global"]["output_dir"], cfg["Arch"]["name"])
    resumed = dict(cfg, Global=dict(cfg["Global"], checkpoints=os.path.join(out, "epoch_1"),
                                    output_dir=str(tmp_path / f"resumed_{name}")))
    Engine(resumed, "train").train()
    straight = paddle.load(os.path.join(out, "epoch_2.pdparams"))
    again = paddle.load(os.path.join(str(tmp_path / f"resumed_{name}"), cfg["Arch"]["name"], "epoch_2.pdparams"))
    assert straight.keys() == again.keys()
    for k in straight:
        assert np.array_equal(np.asarray(straight[k]), np.asarray(again[k])), k
    return out, straight


def test_lora_then_unfreezing_the_top_stage_resumes_bit_identically_and_exports_merged(demo_root, tmp_path):
    cfg = tiny_config(demo_root, str(tmp_path / "output"), "ResNet18", epochs=2)
    cfg["Global"].update(max_train_steps=2, max_eval_steps=1)
    cfg["Freeze"] = {"peft": {"method": "lora", "select": ["stage4"], "rank": 4, "alpha": 8},
                     "schedule": [{"epoch": 2, "unfreeze": ["stage4"], "lr_mult": 0.1}], "allow_random_frozen": True}
    from ppfreeze.engine import Engine
    initial = Engine(cfg, "export").model.state_dict()  # same seed: the weights training started from
    out, straight = run_and_resume(tmp_path, cfg, "lora")
    assert "blocks.7.conv1.conv.lora_A" in straight and "blocks.6.short.conv.lora_B" in straight
    first = paddle.load(os.path.join(out, "epoch_1.pdparams"))
    # epoch 1 trains LoRA only (stage4's base weights fixed); epoch 2 also stage4 itself
    w = "blocks.7.conv1.conv.weight"
    assert np.array_equal(np.asarray(first[w]), initial[w].numpy())
    assert not np.array_equal(np.asarray(first[w]), np.asarray(straight[w]))
    assert not np.array_equal(np.asarray(first["blocks.7.conv1.conv.lora_B"]), initial["blocks.7.conv1.conv.lora_B"].numpy())
    assert np.array_equal(np.asarray(straight["blocks.0.conv0.conv.weight"]), initial["blocks.0.conv0.conv.weight"].numpy())

    export_cfg = dict(cfg, Global=dict(cfg["Global"], pretrained_model=os.path.join(out, "epoch_2"),
                                       save_inference_dir=str(tmp_path / "inference")))
    result = export_model(export_cfg)
    engine = Engine(export_cfg, "export")
    engine.model.eval()
    x = paddle.to_tensor(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype("float32"))
    expected = paddle.nn.functional.softmax(engine.model(x)).numpy()
    loaded = paddle.jit.load(os.path.join(result.save_dir, "inference"))
    np.testing.assert_allclose(loaded(x).numpy(), expected, rtol=0, atol=1e-5)
    from ppfreeze.arch import build_model
    plain = build_model({"name": "ResNet18", "class_num": 12})
    assert sum(int(np.prod(p.shape)) for p in loaded.parameters()) == n_params(plain)
    assert result.meta["Freeze"]["rules"][0]["key"] == "Freeze.peft"


@pytest.mark.parametrize("arch, peft", [("ResNet18", "bitfit"),
                                        ("TinyViTForTests", {"method": "vpt", "num_tokens": 2, "deep": True})])
def test_bitfit_and_vpt_resume_bit_identically(demo_root, tmp_path, arch, peft):
    cfg = tiny_config(demo_root, str(tmp_path / "output"), arch, epochs=2)
    cfg["Global"].update(max_train_steps=2, max_eval_steps=1)
    cfg["Freeze"] = {"peft": peft, "allow_random_frozen": True}
    out, straight = run_and_resume(tmp_path, cfg, arch)
    first = paddle.load(os.path.join(out, "epoch_1.pdparams"))
    moved = {k for k in straight if not np.array_equal(np.asarray(first[k]), np.asarray(straight[k]))}
    expected_trained = {"prompt.tokens"} if arch != "ResNet18" else {"blocks.0.conv0.bn.bias"}
    assert expected_trained <= moved
    assert not any(k.endswith(("conv.weight", "qkv.weight")) for k in moved)  # the base stays fixed
