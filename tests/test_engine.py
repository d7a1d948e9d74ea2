"""End to end: train, resume bit-exactly, checkpoints, NaN guard, tools' exit codes."""
import json
import os

import numpy as np
import paddle
import pytest

from ppfreeze.config import ConfigError, load_config
from ppfreeze.errors import DataIntegrityError
from ppfreeze.engine import Engine, TrainingDiverged
from ppfreeze.engine import checkpoint as ckpt
from _scripts import load_tool


def params_of(prefix):
    return {k: np.array(v) for k, v in paddle.load(prefix + ".pdparams").items()}


def test_train_then_resume_is_bit_identical(make_config, tmp_path):
    cfg, path = make_config(epochs=2, max_train_steps=3)
    result = Engine(load_config(path), "train").train()
    out = os.path.join(cfg["Global"]["output_dir"], "ResNet18")
    for name in ("latest", "best_model", "epoch_1", "epoch_2"):
        for suffix in (".pdparams", ".pdopt", ".pdstates"):
            assert os.path.isfile(os.path.join(out, name + suffix)), name + suffix
    assert os.path.isfile(os.path.join(out, "train.log"))
    assert os.path.isfile(os.path.join(out, "config.yaml"))
    assert result["metric_key"] == "top1"

    resumed_dir = str(tmp_path / "resumed")
    cfg2 = load_config(path, [f"Global.checkpoints={out}/epoch_1", f"Global.output_dir={resumed_dir}"])
    engine = Engine(cfg2, "train")
    engine.train()
    straight, resumed = params_of(os.path.join(out, "epoch_2")), params_of(os.path.join(resumed_dir, "ResNet18", "epoch_2"))
    assert straight.keys() == resumed.keys()
    for k in straight:
        assert np.array_equal(straight[k], resumed[k]), k
    first = paddle.load(os.path.join(out, "epoch_1.pdparams"))
    assert any(not np.array_equal(np.array(first[k]), straight[k]) for k in straight)  # it did train
    states = paddle.load(os.path.join(resumed_dir, "ResNet18", "epoch_2.pdstates"))
    assert states["global_step"] == 6 and states["epoch"] == 2
    # the best metric and its epoch survive the resume (PaddleClas resets them): the resumed run
    # ends with exactly the straight run's record
    assert (engine.best_metric, engine.best_epoch) == (result["best_metric"], result["best_epoch"])


def test_visualdl_scalars_are_written(make_config):
    cfg, path = make_config(epochs=1, max_train_steps=2, use_visualdl=True)
    Engine(load_config(path), "train").train()
    vdl = os.path.join(cfg["Global"]["output_dir"], "ResNet18", "vdl")
    files = [f for f in os.listdir(vdl) if f.startswith("vdlrecords")]
    assert files and os.path.getsize(os.path.join(vdl, files[0])) > 0
    from visualdl import LogReader
    reader = LogReader(file_path=os.path.join(vdl, files[0]))
    tags = reader.get_tags()["scalar"]
    assert "train/loss" in tags and "eval/top1" in tags and "train/lr" in tags


def test_interrupted_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model = paddle.nn.Linear(2, 2)
    prefix = str(tmp_path / "latest")
    ckpt.save_checkpoint(prefix, model.state_dict(), None, {"epoch": 1})
    good = params_of(prefix)
    real_save = paddle.save

    def broken_save(obj, path, *a, **k):
        real_save(obj, path, *a, **k)
        with open(path, "r+b") as f:  # half-written file, then the "crash"
            f.truncate(10)
        raise OSError("disk full")

    monkeypatch.setattr(paddle, "save", broken_save)
    with paddle.no_grad():
        model.weight.set_value(model.weight + 1)
    with pytest.raises(OSError):
        ckpt.save_checkpoint(prefix, model.state_dict(), None, {"epoch": 2})
    monkeypatch.setattr(paddle, "save", real_save)
    loaded = ckpt.load_checkpoint(prefix)
    assert loaded["states"]["epoch"] == 1
    assert all(np.array_equal(np.array(loaded["model"][k]), good[k]) for k in good)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_mismatched_checkpoint_files_are_refused(tmp_path):
    model = paddle.nn.Linear(2, 2)
    prefix = str(tmp_path / "latest")
    ckpt.save_checkpoint(prefix, model.state_dict(), None, {"epoch": 1})
    paddle.save(paddle.nn.Linear(2, 2).state_dict(), prefix + ".pdparams")  # e.g. crash between renames
    with pytest.raises(DataIntegrityError, match="latest.pdparams: incomplete or modified"):
        ckpt.load_checkpoint(prefix)


class NaNAfter(Engine):
    """Makes the logits NaN from global step ``bad_step`` on (the loss diverges exactly there).

    Injected into the logits rather than the images: Paddle's CPU kernels did not reliably carry
    NaN images through to the loss here (a ResNet18 forward gave finite logits).
    """
    bad_step = 5

    def forward(self, images, labels, indices=None):
        out = super().forward(images, labels, indices)
        if self.global_step + 1 >= self.bad_step:
            out = out + paddle.full_like(out, float("nan"))
        return out


def test_nan_loss_stops_naming_the_step_and_keeps_checkpoints(make_config):
    cfg, path = make_config(epochs=3, max_train_steps=3, print_batch_step=10)
    out = os.path.join(cfg["Global"]["output_dir"], "ResNet18")
    with pytest.raises(TrainingDiverged) as err:
        NaNAfter(load_config(path), "train").train()
    # step 5 is in epoch 2; the host only reads the guard at the epoch's last step (6), yet the
    # message names step 5 and the epoch-1 checkpoint that is really on disk
    message = str(err.value)
    assert "loss is nan at global step 5" in message and "learning_rate" in message
    assert f"{os.path.join(out, 'latest')} (epoch 1;" in message
    resumable = ckpt.load_checkpoint(os.path.join(out, "latest"))
    assert resumable["states"]["epoch"] == 1
    assert all(np.isfinite(np.array(v)).all() for v in resumable["model"].values())
    assert not os.path.exists(os.path.join(out, "epoch_2.pdparams"))


def test_nan_before_any_checkpoint_says_none_was_saved(make_config):
    cfg, path = make_config(epochs=2, max_train_steps=3)
    NaNAfter.bad_step = 1
    try:
        with pytest.raises(TrainingDiverged, match="global step 1: training stopped. No checkpoint had been saved"):
            NaNAfter(load_config(path), "train").train()
    finally:
        NaNAfter.bad_step = 5


def test_finetune_with_another_class_num(make_config, tmp_path):
    from ppfreeze.arch import build_model
    cfg, path = make_config(epochs=1, max_train_steps=1, eval_during_train=False)
    source = str(tmp_path / "imagenet_like.pdparams")
    paddle.save(build_model({"name": "ResNet18", "class_num": 20}).state_dict(), source)
    # no warm-up: its first step has learning rate 0
    engine = Engine(load_config(path, [f"Global.pretrained_model={source}", "Optimizer.lr.warmup_epoch=0"]), "train")
    report = engine.pretrained_report
    assert [m[0] for m in report.mismatched] == ["fc.weight", "fc.bias"]
    assert not report.missing
    loaded = {k: np.array(v) for k, v in paddle.load(source).items()}
    start = {k: np.array(v) for k, v in engine.model.state_dict().items()}
    assert np.array_equal(start["stem.0.conv.weight"], loaded["stem.0.conv.weight"])
    engine.train()
    trained = {k: np.array(v) for k, v in engine.model.state_dict().items()}
    assert trained["fc.weight"].shape == (512, 12)
    assert not np.array_equal(trained["fc.weight"], start["fc.weight"])  # the new head trained


def test_labels_beyond_class_num_are_a_config_error(make_config):
    cfg, path = make_config(epochs=1, max_train_steps=1)
    with pytest.raises(ConfigError, match="class_num"):
        Engine(load_config(path, ["Arch.class_num=5"]), "train").train()


def test_tools_exit_codes_and_messages(make_config, capsys):
    cfg, path = make_config(epochs=1, max_train_steps=1)
    train = load_tool("train")
    assert train.main(["-c", path, "-o", "Global.epoch=1"]) == 2
    assert "Did you mean: epochs" in capsys.readouterr().err
    assert train.main(["-c", path, "-o", "Arch.name=ResNet5"]) == 2
    assert "unknown model 'ResNet5'" in capsys.readouterr().err
    assert train.main(["-c", path, "--freeze-report"]) == 0
    with pytest.raises(SystemExit) as e:
        train.main(["--help"])
    assert e.value.code == 0
    assert "--freeze-report" in capsys.readouterr().out


def test_eval_and_infer_tools(make_config, demo_root, capsys):
    cfg, path = make_config(epochs=1, max_train_steps=2, eval_during_train=False)
    assert load_tool("train").main(["-c", path]) == 0
    best = os.path.join(cfg["Global"]["output_dir"], "ResNet18", "latest")
    assert load_tool("eval").main(["-c", path]) == 2  # no weights given: refused
    assert "pretrained_model" in capsys.readouterr().err
    assert load_tool("eval").main(["-c", path, "-o", f"Global.pretrained_model={best}"]) == 0
    img_dir = os.path.join(demo_root, "images")
    infer_cfg = ["-o", f"Global.pretrained_model={best}", "-o", f"Infer.infer_imgs={img_dir}",
                 "-o", "Infer.batch_size=4", "-o", "Infer.transforms=" + json.dumps([
                     {"DecodeImage": {"to_rgb": True}}, {"ResizeImage": {"size": 32}},
                     {"NormalizeImage": {"scale": 0.00392, "order": ""}}, {"ToCHWImage": None}]),
                 "-o", "Infer.PostProcess={name: Topk, topk: 3, class_id_map_file: " +
                 os.path.join(demo_root, "label_list.txt") + "}"]
    assert load_tool("infer").main(["-c", path] + infer_cfg) == 0
    assert "label_names" in capsys.readouterr().out


def test_ema_is_tracked_evaluated_saved_and_resumed_exactly(make_config, tmp_path):
    cfg, path = make_config(epochs=2, max_train_steps=3)
    ema = ["EMA.decay=0.5"]
    engine = Engine(load_config(path, ema), "train")
    engine.train()
    out = os.path.join(cfg["Global"]["output_dir"], "ResNet18")
    assert os.path.isfile(os.path.join(out, "best_model_ema.pdparams"))
    weights, averaged = params_of(os.path.join(out, "epoch_2")), paddle.load(os.path.join(out, "epoch_2.pdema"))
    assert not np.array_equal(weights["fc.weight"], np.array(averaged["fc.weight"]))
    assert "[EMA]" in open(os.path.join(out, "train.log")).read()

    resumed_dir = str(tmp_path / "resumed_ema")
    Engine(load_config(path, ema + [f"Global.checkpoints={out}/epoch_1", f"Global.output_dir={resumed_dir}"]),
           "train").train()
    again = paddle.load(os.path.join(resumed_dir, "ResNet18", "epoch_2.pdema"))
    for k in averaged:
        assert np.array_equal(np.array(averaged[k]), np.array(again[k])), k


def test_ema_decay_is_validated(make_config):
    cfg, path = make_config(epochs=1, max_train_steps=1)
    with pytest.raises(ConfigError, match="EMA.decay"):
        Engine(load_config(path, ["EMA.decay=1.5"]), "train").train()
    with pytest.raises(ConfigError, match="Did you mean: decay"):
        Engine(load_config(path, ["EMA.decy=0.9"]), "train").train()


def test_a_bad_eval_section_fails_before_the_first_training_step(make_config, tmp_path):
    cfg, path = make_config(epochs=1)
    bad_list = tmp_path / "val_missing.txt"
    for override in ([f"DataLoader.Eval.dataset.cls_label_path={bad_list}"],
                     ["Metric.Eval.0.TopkAcc.topk=[0]"],
                     ["DataLoader.Eval.sampler.batch_size=-1"]):
        engine = Engine(load_config(path, override), "train")
        with pytest.raises(ConfigError):
            engine.train()
        assert engine.global_step == 0, override
