"""The Freeze section through the engine: schedule + resume exactness, audit, report."""
import json
import os

import numpy as np
import paddle
import pytest

from ppfreeze.config import load_config
from ppfreeze.engine import Engine

FREEZE = ["Freeze.until=stage2", "Freeze.allow_random_frozen=true", "Freeze.verify=1",
          "Freeze.schedule=[{epoch: 2, unfreeze: [stage2], lr_mult: 0.1}, {epoch: 3, unfreeze: [stage1]}]"]


def weights(path):
    return {k: np.array(v) for k, v in paddle.load(path + ".pdparams").items()}


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, demo_root):
    from conftest import tiny_config
    import yaml
    tmp = tmp_path_factory.mktemp("freeze_run")
    cfg = tiny_config(demo_root, str(tmp / "out"), "ResNet18", epochs=3)
    cfg["Global"]["max_train_steps"] = 2
    cfg["Optimizer"] = {"name": "AdamW", "weight_decay": 0.05, "lr": {"name": "Constant", "learning_rate": 0.01}}
    path = tmp / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    engine = Engine(load_config(str(path), FREEZE), "train")
    initial = {k: np.array(v) for k, v in engine.model.state_dict().items()}
    engine.train()
    return str(path), os.path.join(str(tmp / "out"), "ResNet18"), initial


def test_frozen_tensors_follow_the_schedule(straight_run):
    _, out, initial = straight_run
    e1, e2, e3 = (weights(os.path.join(out, f"epoch_{i}")) for i in (1, 2, 3))
    stem_w, stage1_w, stage2_w, stage3_w = ("stem.0.conv.weight", "blocks.0.conv0.conv.weight",
                                             "blocks.2.conv0.conv.weight", "blocks.4.conv0.conv.weight")
    stem_mean = "stem.0.bn._mean"
    # epoch 1: stem..stage2 frozen (weights and BN statistics), stage3 trains
    for k in (stem_w, stage1_w, stage2_w, stem_mean):
        assert np.array_equal(e1[k], initial[k]), k
    assert not np.array_equal(e1[stage3_w], initial[stage3_w])
    # epoch 2: stage2 unfrozen, stage1 still frozen
    assert not np.array_equal(e2[stage2_w], e1[stage2_w])
    assert np.array_equal(e2[stage1_w], initial[stage1_w])
    # epoch 3: stage1 unfrozen too; the stem never
    assert not np.array_equal(e3[stage1_w], e2[stage1_w])
    assert np.array_equal(e3[stem_w], initial[stem_w]) and np.array_equal(e3[stem_mean], initial[stem_mean])


@pytest.mark.parametrize("resume_from", ["epoch_1", "epoch_2"])
def test_resume_across_milestones_is_bit_identical(straight_run, tmp_path, resume_from):
    path, out, _ = straight_run
    cfg = load_config(path, FREEZE + [f"Global.checkpoints={os.path.join(out, resume_from)}",
                                      f"Global.output_dir={tmp_path}"])
    Engine(cfg, "train").train()
    straight, resumed = weights(os.path.join(out, "epoch_3")), weights(os.path.join(str(tmp_path), "ResNet18", "epoch_3"))
    for k in straight:
        assert np.array_equal(straight[k], resumed[k]), k


def test_resume_with_another_freeze_plan_is_refused(straight_run, tmp_path):
    from ppfreeze.config import ConfigError
    path, out, _ = straight_run
    cfg = load_config(path, ["Freeze.until=stage3", "Freeze.allow_random_frozen=true",
                             f"Global.checkpoints={os.path.join(out, 'epoch_1')}", f"Global.output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="different Freeze plan"):
        Engine(cfg, "train").train()


def test_report_and_audit_are_written(straight_run):
    _, out, _ = straight_run
    report = json.load(open(os.path.join(out, "freeze_report.json")))
    assert report["audit"].startswith("frozen tensors unchanged")
    log = open(os.path.join(out, "train.log")).read()
    assert "frozen tensors unchanged" in log and "Freeze schedule: epoch 2 milestone applied" in log


def test_freezing_random_weights_needs_consent(make_config):
    from ppfreeze.config import ConfigError
    cfg, path = make_config(epochs=1)
    with pytest.raises(ConfigError, match="allow_random_frozen"):
        Engine(load_config(path, ["Freeze.until=stage1"]), "train")
    Engine(load_config(path, ["Freeze.until=stage1", "Freeze.allow_random_frozen=true"]), "train")


def _deterministic_config(make_config, epochs=3):
    cfg, path = make_config(epochs=epochs, eval_during_train=False)
    ops = cfg["DataLoader"]["Eval"]["dataset"]["transform_ops"]
    return path, ["DataLoader.Train.dataset.transform_ops=" + json.dumps(ops),
                  "Freeze.until=stage2", "Freeze.allow_random_frozen=true"]


def test_cached_features_train_exactly_like_the_full_forward(make_config, tmp_path):
    path, overrides = _deterministic_config(make_config)
    runs = {}
    for mode in ("auto", "false"):
        engine = Engine(load_config(path, overrides + [f"Freeze.cache_features={mode}",
                                                       f"Global.output_dir={tmp_path / mode}"]), "train")
        engine.train()
        runs[mode] = {k: np.array(v) for k, v in engine.model.state_dict().items()}
        if mode == "auto":
            cache = engine.freezer.feature_cache
            assert cache is not None and cache.verified and cache.enabled
            assert len(cache.store) == len(engine.train_loader.dataset)  # every image, recorded in epoch 1
            # epochs 2 and 3 replayed every batch (the first replay is the verified one)
            assert cache.replays == 2 * engine.iters_per_epoch
        else:
            assert engine.freezer.feature_cache is None
    for k in runs["false"]:
        assert np.array_equal(runs["auto"][k], runs["false"][k]), k


def test_random_transforms_disable_the_cache(make_config, caplog):
    cfg, path = make_config(epochs=2, max_train_steps=1)
    engine = Engine(load_config(path, ["Freeze.until=stage2", "Freeze.allow_random_frozen=true"]), "train")
    engine.train()
    assert engine.freezer.feature_cache is None
    assert "training transforms are random (RandCropImage, RandFlipImage)" in caplog.text
