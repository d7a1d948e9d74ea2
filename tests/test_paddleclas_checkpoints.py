"""Checkpoints across tools: resuming from PaddleClas's checkpoint layout, and writing it.

The fixtures are written the way PaddleClas's ``save_model`` writes them (``ppcls/utils/save_load.py``):
``paddle.save(model.state_dict(), p.pdparams)`` (with the name table ``paddle.save`` adds),
``paddle.save([optimizer.state_dict()], p.pdopt)`` (accumulators under Paddle's generated names,
``conv2d_0.w_0_velocity_0``, plus ``LR_Scheduler``) and ``paddle.save({"metric", "epoch"}, p.pdstates)``.
PaddleClas itself is not needed; tools/dev/paddleclas_checkpoint_roundtrip.py checks the same
against PaddleClas's trainer.
"""
import os

import numpy as np
import paddle
import paddle.nn as nn
import pytest
import yaml

from conftest import tiny_config
from ppfreeze.arch import build_model
from ppfreeze.config import ConfigError, load_config
from ppfreeze.engine import Engine
from ppfreeze.engine.paddleclas_ckpt import paddleclas_param_names
from ppfreeze.utils.safe_load import load_file
from test_engine import load_tool

STEPS_PER_EPOCH = 6   # the demo set's 48 training images in batches of 8


def _config(demo_root, tmp_path, epochs=2, **glob):
    cfg = tiny_config(demo_root, str(tmp_path / "out"), "ResNet18", epochs)
    cfg["Global"].update(eval_during_train=False, **glob)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    return (paddle.to_tensor(rng.standard_normal((8, 3, 32, 32)).astype("float32")),
            paddle.to_tensor(rng.integers(0, 12, (8, 1)).astype("int64")))


def write_paddleclas_checkpoint(prefix, epoch=1, shift_names=True, name_table=True, optimizers=1):
    """A ResNet18 trained 3 steps and saved as PaddleClas's save_model saves it.

    ``shift_names``: layers built before the model (as a distillation teacher would be) shift every
    generated name (``conv2d_1.w_0`` is the stem), so only the name table maps the optimizer state right.
    Returns the model, its optimizer and LR schedule, to continue training next to ours.
    """
    with paddle.utils.unique_name.guard():
        if shift_names:
            nn.Conv2D(1, 1, 1), nn.BatchNorm2D(1), nn.Linear(1, 1)
        model = build_model({"name": "ResNet18", "class_num": 12})
        for param in model.parameters():   # PaddleClas's ResNet uses nn.BatchNorm: batch_norm_N, not batch_norm2d_N
            param.name = param.name.replace("batch_norm2d_", "batch_norm_")
        schedule = paddle.optimizer.lr.LinearWarmup(
            paddle.optimizer.lr.CosineAnnealingDecay(0.05, T_max=STEPS_PER_EPOCH), warmup_steps=STEPS_PER_EPOCH,
            start_lr=0.0, end_lr=0.05)
        optimizer = paddle.optimizer.Momentum(schedule, momentum=0.9, parameters=model.parameters(),
                                              weight_decay=paddle.regularizer.L2Decay(1e-4))
        for step in range(3):
            x, y = _batch(step)
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            optimizer.clear_grad()
            schedule.step()
    state = model.state_dict() if name_table else {k: v.numpy() for k, v in model.state_dict().items()}
    paddle.save(state, prefix + ".pdparams")
    paddle.save([optimizer.state_dict()] * optimizers, prefix + ".pdopt")
    paddle.save({"metric": 0.0, "epoch": epoch}, prefix + ".pdstates")
    return model, optimizer, schedule


def _resumed_engine(path, prefix, *overrides):
    engine = Engine(load_config(path, [f"Global.checkpoints={prefix}", *overrides]), "train")
    engine._build_train_parts()
    return engine, engine._resume_or_start()


@pytest.mark.parametrize("shift_names,name_table", [(True, True), (False, False)],
                         ids=["name table, shifted names", "no name table: PaddleClas's generated names"])
def test_resume_from_paddleclas_layout_continues_exactly(demo_root, tmp_path, caplog, shift_names, name_table):
    prefix = str(tmp_path / "pc" / "epoch_1")
    os.makedirs(os.path.dirname(prefix))
    ref, ref_opt, ref_lr = write_paddleclas_checkpoint(prefix, shift_names=shift_names, name_table=name_table)
    opt_keys = set(load_file(prefix + ".pdopt")[0])
    assert ("conv2d_1.w_0_velocity_0" if shift_names else "conv2d_0.w_0_velocity_0") in opt_keys
    assert "batch_norm_1.w_0_velocity_0" in opt_keys and "LR_Scheduler" in opt_keys
    engine, start = _resumed_engine(_config(demo_root, tmp_path), prefix)
    assert start == 2 and engine.global_step == STEPS_PER_EPOCH
    assert "Resumed from PaddleClas checkpoint" in caplog.text
    assert ("matched by the names PaddleClas generates" in caplog.text) == (not name_table)
    assert engine.lr_scheduler.last_epoch == ref_lr.last_epoch == 3
    # the next step, taken by both with the same batch, gives the same weights and momentum
    x, y = _batch(9)
    ref.train(), engine.model.train()
    engine.train_loss(ref(x), y)["loss"].backward()
    ref_opt.step()
    engine.train_loss(engine.model(x), y)["loss"].backward()
    engine.optimizer.step()
    ours = engine.model.state_dict()
    for key, value in ref.state_dict().items():
        np.testing.assert_array_equal(ours[key].numpy(), value.numpy(), err_msg=key)
    velocity = engine.optimizer._accumulators["velocity"]
    named = dict(engine.model.named_parameters())
    for key, param in ref.named_parameters():
        if param.stop_gradient:   # BN statistics
            continue
        np.testing.assert_array_equal(velocity[named[key].name].numpy(),
                                      ref_opt._accumulators["velocity"][param.name].numpy(), err_msg=key)


def test_what_cannot_be_carried_is_named(demo_root, tmp_path, caplog):
    path = _config(demo_root, tmp_path)
    prefix = str(tmp_path / "pc" / "latest")
    os.makedirs(os.path.dirname(prefix))
    write_paddleclas_checkpoint(prefix, optimizers=2)
    with pytest.raises(ConfigError, match="holds 2 optimizer states; ppfreeze trains with one optimizer"):
        _resumed_engine(path, prefix)
    write_paddleclas_checkpoint(prefix)
    opt = load_file(prefix + ".pdopt")
    only_fc = {k: v for k, v in opt[0].items() if k.startswith("linear_1.") or k == "LR_Scheduler"}
    paddle.save([only_fc], prefix + ".pdopt")   # PaddleClas trained the classifier only
    with pytest.raises(ConfigError, match=r"has no optimizer state for 63 entries this run trains, e.g. "
                                          r"\['stem.0.conv.weight@velocity'"):
        _resumed_engine(path, prefix)
    # ... which resumes when this run freezes the same parameters
    engine, start = _resumed_engine(path, prefix, "Freeze.until=stage4", "Freeze.allow_random_frozen=true")
    assert start == 2 and "Resumed from PaddleClas checkpoint" in caplog.text
    paddle.save([opt[0]], prefix + ".pdopt")
    engine, _ = _resumed_engine(path, prefix, "Freeze.until=stage4", "Freeze.allow_random_frozen=true")
    assert "optimizer state of 63 entries is not carried: this run does not train those parameters" in caplog.text
    with pytest.raises(ConfigError, match="Optimizer.lr: .*LR_Scheduler state .* does not fit this run's schedule"):
        _resumed_engine(path, prefix, "Optimizer.lr.warmup_epoch=0")
    os.remove(prefix + ".pdopt")
    with pytest.raises(ConfigError, match=r"latest.pdopt is missing: cannot resume the optimizer"):
        _resumed_engine(path, prefix)


def test_export_writes_what_paddleclas_resumes_and_it_round_trips(demo_root, tmp_path, capsys):
    path = _config(demo_root, tmp_path)
    Engine(load_config(path), "train").train()   # 2 epochs straight
    run = str(tmp_path / "out" / "ResNet18")
    exported = str(tmp_path / "pc" / "epoch_1")
    tool = load_tool("export_paddleclas_checkpoint")
    assert tool.main(["-c", path, "--checkpoint", f"{run}/epoch_1", "--output", exported]) == 0
    # PaddleClas's layout: its file names, [state] in .pdopt under its trainer's parameter names
    opt = load_file(exported + ".pdopt")
    assert isinstance(opt, list) and len(opt) == 1
    names = paddleclas_param_names({"name": "ResNet18", "class_num": 12}, build_model)
    trainable = [k for k, p in build_model({"name": "ResNet18", "class_num": 12}).named_parameters()
                 if not p.stop_gradient]
    assert set(opt[0]) == {f"{names[k]}_velocity_0" for k in trainable} | {"LR_Scheduler"}
    # the names a fresh PaddleClas process gives ResNet18 (its nn.BatchNorm: batch_norm_N)
    assert {"conv2d_0.w_0_velocity_0", "batch_norm_0.w_0_velocity_0", "linear_0.b_0_velocity_0"} <= set(opt[0])
    assert opt[0]["LR_Scheduler"]["last_epoch"] == STEPS_PER_EPOCH
    assert load_file(exported + ".pdstates") == {"metric": 0.0, "epoch": 1}
    weights = load_file(exported + ".pdparams", keep_name_table=True)
    assert weights.pop("StructuredToParameterName@@") == names   # read back by our resume
    assert set(weights) == set(load_file(f"{run}/epoch_1.pdparams"))
    # resuming from it here ends exactly where the straight run ended
    resumed_dir = str(tmp_path / "resumed")
    Engine(load_config(path, [f"Global.checkpoints={exported}", f"Global.output_dir={resumed_dir}"]), "train").train()
    straight, resumed = load_file(f"{run}/latest.pdparams"), load_file(f"{resumed_dir}/ResNet18/latest.pdparams")
    for key in straight:
        np.testing.assert_array_equal(straight[key], resumed[key], err_msg=key)
    # writing through a run's own checkpoint links would change that checkpoint
    assert tool.main(["-c", path, "--checkpoint", f"{run}/epoch_1", "--output", f"{run}/latest"]) == 2
    assert "is a link" in capsys.readouterr().err


def test_export_refuses_models_whose_paddleclas_names_are_unknown():
    with pytest.raises(ConfigError, match=r"alexnet family.*cannot tell which names PaddleClas gives"):
        paddleclas_param_names({"name": "AlexNet", "class_num": 4}, build_model)
    with pytest.raises(ConfigError, match="Arch.Neck.name: BNNeck: PaddleClas's parameter names for this gear"):
        paddleclas_param_names({"name": "RecModel", "Backbone": {"name": "ResNet18"},
                                "Neck": {"name": "BNNeck", "num_features": 512},
                                "Head": {"name": "FC", "embedding_size": 512, "class_num": 4}}, build_model)
