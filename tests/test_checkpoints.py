"""Checkpoints as one atomic unit: kills at any point, full disks, resume rules, output directories."""
import errno
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import paddle
import pytest
import yaml

from _crash_driver import ARCH
from conftest import tiny_config
from ppfreeze.config import ConfigError, load_config
from ppfreeze.engine import Engine
from ppfreeze.engine import checkpoint as ckpt
from ppfreeze.engine.checkpoint_store import CheckpointStore
from ppfreeze.engine.engine import CheckpointSaveFailed
from ppfreeze.engine.run_dir import OutputDirLock
from test_engine import load_tool

HERE = os.path.dirname(os.path.abspath(__file__))


def tiny_run(demo_root, tmp_path, epochs=3, name="cfg.yaml", **glob):
    """Config for the tests' TinyNet: 2 steps per epoch, eval on 1 batch, EMA; returns (path, run dir)."""
    cfg = tiny_config(demo_root, str(tmp_path / "out"), ARCH, epochs)
    cfg["Global"].update(max_train_steps=2, max_eval_steps=1, print_batch_step=1, **glob)
    cfg["EMA"] = {"decay": 0.5}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return str(path), os.path.join(str(tmp_path / "out"), ARCH)


def weights(prefix):
    return {k: np.asarray(v) for k, v in ckpt.load_checkpoint(prefix)["model"].items()}


# ----------------------------------------------------------------------------- the store
def _write(store, epoch, value):
    def write(base):
        paddle.save({"w": np.full([2], value, "float32")}, base + ".pdparams")
        paddle.save({"epoch": epoch, "file_digests": {".pdparams": ckpt.file_sha256(base + ".pdparams")}},
                    base + ".pdstates")
    return store.write_set(write, epoch)


def test_a_commit_switches_every_name_at_once_and_removes_what_nothing_uses(tmp_path):
    store = CheckpointStore(str(tmp_path))
    (tmp_path / "latest.pdparams").write_bytes(b"old layout")      # regular files of the earlier layout
    (tmp_path / "latest.pdopt").write_bytes(b"old layout")
    first = _write(store, 1, 1.0)
    store.stage(["latest", "epoch_1"], first)
    store.commit()
    assert store.committed() == {"epoch_1": first, "latest": first}
    for name in ("latest", "epoch_1"):  # PaddleClas's names are links through the commit point
        assert os.readlink(tmp_path / f"{name}.pdparams") == f".checkpoints/current/{name}/model.pdparams"
        assert paddle.load(str(tmp_path / f"{name}.pdparams"))["w"].numpy().tolist() == [1.0, 1.0]
    assert not os.path.lexists(tmp_path / "latest.pdopt")  # no stale file of the old layout mixes in
    second = _write(store, 2, 2.0)
    assert store.committed()["latest"] == first   # written, not yet visible
    store.stage(["latest"], second)
    store.commit()
    assert weights(str(tmp_path / "latest"))["w"][0] == 2.0 and weights(str(tmp_path / "epoch_1"))["w"][0] == 1.0
    third = _write(store, 3, 3.0)
    store.stage(["latest", "epoch_1"], third)
    store.commit()
    assert sorted(os.listdir(store.root)) == sorted(["current", os.readlink(os.path.join(store.root, "current")),
                                                     third])


def test_clean_removes_leftovers_of_interrupted_saves(tmp_path):
    store = CheckpointStore(str(tmp_path))
    kept = _write(store, 1, 1.0)
    store.stage(["latest"], kept)
    store.commit()
    orphan = _write(store, 2, 2.0)                   # written, never committed (killed before the commit)
    os.makedirs(os.path.join(store.root, ".staging-123-abcd"))
    (tmp_path / ".latest.pdopt.x1y2.tmp").write_bytes(b"x" * 100)  # the earlier layout's temporary file
    removed = store.clean()
    assert len(removed) == 3 and any(orphan in r for r in removed)
    assert sorted(os.listdir(store.root)) == sorted(["current", os.readlink(os.path.join(store.root, "current")),
                                                     kept])
    assert not (tmp_path / ".latest.pdopt.x1y2.tmp").exists()
    assert weights(str(tmp_path / "latest"))["w"][0] == 1.0


def test_a_damaged_set_is_detected_by_its_name_before_unpickling(tmp_path):
    store = CheckpointStore(str(tmp_path))
    store.stage(["latest"], _write(store, 1, 1.0))
    store.commit()
    states = os.path.realpath(tmp_path / "latest.pdstates")
    data = bytearray(open(states, "rb").read())
    data[-3] ^= 1
    open(states, "wb").write(bytes(data))
    with pytest.raises(ckpt.DataIntegrityError, match="latest.pdstates: its file .* does not match the digest its "
                                                      "checkpoint directory is named after"):
        ckpt.load_checkpoint(str(tmp_path / "latest"))


# ----------------------------------------------------------------------------- kills at any point
def test_sigkill_at_any_save_step_leaves_a_checkpoint_that_resumes_bit_identically(demo_root, tmp_path):
    """Training is killed (SIGKILL) inside each checkpoint file write, at every step of the commit, in
    training steps...; each time every committed name verifies, Global.checkpoints=auto resumes, and
    the finished run's checkpoints equal an uninterrupted run's, array by array. PPFREEZE_CRASH_POINTS
    =kinds|every runs more points (docs/reliability.md has the counts)."""
    path, _ = tiny_run(demo_root, tmp_path, save_interval=3)
    cfg = yaml.safe_load(open(path))
    cfg["Freeze"] = {"until": "stage1", "allow_random_frozen": True, "schedule": [{"epoch": 3, "unfreeze": ["stage1"]}]}
    open(path, "w").write(yaml.safe_dump(cfg))
    plan, result = tmp_path / "plan.json", tmp_path / "result.json"
    plan.write_text(json.dumps({"points": os.environ.get("PPFREEZE_CRASH_POINTS", "sample")}))
    proc = subprocess.run([sys.executable, os.path.join(HERE, "_crash_driver.py"), str(tmp_path / "crash"), path,
                           str(plan), str(result)], env=dict(os.environ, OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.load(open(result))["results"]
    failed = [r for r in results if r["problems"]]
    assert not failed, json.dumps(failed[:5], indent=1)
    kinds = {r["event"].split(":")[0] for r in results}
    assert len(results) >= 15 and {"paddle.save", "rename", "replace", "train_step", "rmtree"} <= kinds
    written = {os.path.splitext(r["event"])[1] for r in results if r["event"].startswith("paddle.save:mid")}
    assert written == {".pdparams", ".pdopt", ".pdema", ".pdstates"}   # killed inside each file's write
    print(f"{len(results)} kill points survived")


@pytest.mark.parametrize("where", ["file write", "commit"])
def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint_resumable(demo_root, tmp_path, monkeypatch, where):
    path, out = tiny_run(demo_root, tmp_path, save_interval=5)
    straight = Engine(load_config(path, [f"Global.output_dir={tmp_path / 'straight'}"]), "train")
    straight.train()
    real_save, real_symlink, calls = paddle.save, os.symlink, {"saves": 0}

    def full_disk_save(obj, target, *a, **k):
        calls["saves"] += 1
        if calls["saves"] > 8:   # epoch 1: best_model_ema set + main set (4 files each); then the disk is full
            open(target, "wb").write(b"\x80\x04partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(obj, target, *a, **k)

    def full_disk_symlink(src, dst, *a, **k):
        if "gen" in os.path.basename(os.path.dirname(dst)) and calls.get("commits", 0) >= 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_symlink(src, dst, *a, **k)
        if os.path.basename(dst).startswith(".current"):
            calls["commits"] = calls.get("commits", 0) + 1

    if where == "file write":
        monkeypatch.setattr(paddle, "save", full_disk_save)
    else:
        monkeypatch.setattr(os, "symlink", full_disk_symlink)
    with pytest.raises(CheckpointSaveFailed) as err:
        Engine(load_config(path), "train").train()
    message = str(err.value)
    assert "No space left on device" in message and f"{os.path.join(out, 'latest')} (epoch 1;" in message
    monkeypatch.undo()
    assert ckpt.load_checkpoint(os.path.join(out, "latest"))["states"]["epoch"] == 1
    assert not [e for e in os.listdir(os.path.join(out, ".checkpoints")) if e.startswith(".staging")]
    resumed = Engine(load_config(path, ["Global.checkpoints=auto"]), "train")
    resumed.train()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_ctrl_c_says_which_checkpoint_is_kept(demo_root, tmp_path, monkeypatch, capsys):
    path, out = tiny_run(demo_root, tmp_path)
    real_save, calls = paddle.save, {"n": 0}

    def interrupted_save(obj, target, *a, **k):   # Ctrl-C while epoch 2's .pdopt is written
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        real_save(obj, target, *a, **k)

    monkeypatch.setattr(paddle, "save", interrupted_save)
    assert load_tool("train").main(["-c", path]) == 130
    err = capsys.readouterr().err
    assert f"interrupted. The newest complete checkpoint on disk is {os.path.join(out, 'latest')} (epoch 1;" in err, err
    monkeypatch.undo()
    assert ckpt.load_checkpoint(os.path.join(out, "latest"))["states"]["epoch"] == 1
    assert not os.path.exists(os.path.join(out, ".ppfreeze.lock"))


# ----------------------------------------------------------------------------- resume rules
@pytest.fixture(scope="module")
def finished(tmp_path_factory, demo_root):
    """A finished 2-epoch TinyNet run."""
    tmp = tmp_path_factory.mktemp("finished")
    path, out = tiny_run(demo_root, tmp, epochs=2)
    Engine(load_config(path), "train").train()
    return path, out


def test_resuming_with_another_arch_is_a_config_error(finished, tmp_path, capsys):
    path, out = finished
    train = load_tool("train")
    base = ["-c", path, "-o", f"Global.checkpoints={out}/epoch_2", "-o", f"Global.output_dir={tmp_path}",
            "-o", "Global.epochs=3"]
    assert train.main(base + ["-o", "Arch.name=ResNet18"]) == 2
    err = capsys.readouterr().err
    assert f"was saved by a {ARCH} model, but Arch.name is ResNet18" in err and "Traceback" not in err
    assert train.main(base + ["-o", "Arch.class_num=20"]) == 2
    err = capsys.readouterr().err
    assert "does not fit the model" in err and "fc.weight (file [16, 12] vs model [16, 20])" in err, err


def test_nothing_left_to_train_is_said(finished, tmp_path, capsys, caplog):
    path, out = finished
    train = load_tool("train")
    assert train.main(["-c", path, "-o", f"Global.checkpoints={out}/latest", "-o", f"Global.output_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "Global.epochs: is 2, and" in err and "nothing left to train (raise Global.epochs above 2" in err, err
    before = sorted(os.listdir(os.path.join(out, ".checkpoints")))
    assert train.main(["-c", path, "-o", "Global.checkpoints=auto"]) == 0
    assert "already finished epoch 2 of Global.epochs 2: nothing left to train" in caplog.text
    assert sorted(os.listdir(os.path.join(out, ".checkpoints"))) == before


def test_ema_and_foreign_checkpoints_are_refused_for_resume(finished, tmp_path):
    path, out = finished
    with pytest.raises(ConfigError, match="holds the EMA weights"):
        Engine(load_config(path, [f"Global.checkpoints={out}/best_model_ema", f"Global.output_dir={tmp_path}",
                                  "Global.epochs=3"]), "train").train()
    foreign = tmp_path / "paddleclas"
    foreign.mkdir()
    paddle.save(paddle.load(os.path.join(out, "latest.pdparams")), str(foreign / "latest.pdparams"))
    paddle.save({"metric": 0.5, "epoch": 2}, str(foreign / "latest.pdstates"))   # PaddleClas's .pdstates
    # PaddleClas's layout is resumed (tests/test_paddleclas_checkpoints.py), but not without its .pdopt
    with pytest.raises(ConfigError, match=r"latest.pdopt is missing: cannot resume the optimizer"):
        Engine(load_config(path, [f"Global.checkpoints={foreign}/latest", f"Global.output_dir={tmp_path}",
                                  "Global.epochs=3"]), "train").train()
    paddle.save({"epoch": 2, "step": 7}, str(foreign / "latest.pdstates"))   # some other tool's
    with pytest.raises(ConfigError, match="is not a ppfreeze training checkpoint"):
        Engine(load_config(path, [f"Global.checkpoints={foreign}/latest", f"Global.output_dir={tmp_path}",
                                  "Global.epochs=3"]), "train").train()


def test_a_milestone_after_the_last_epoch_is_warned_about(demo_root, tmp_path, caplog):
    path, _ = tiny_run(demo_root, tmp_path, epochs=1)
    Engine(load_config(path, ["Freeze.until=stage1", "Freeze.allow_random_frozen=true",
                              "Freeze.schedule=[{epoch: 4, unfreeze: [stage1]}]"]), "train").train()
    assert "Freeze.schedule.0: the milestone at epoch 4 (unfreeze stage1) comes after the last epoch" in caplog.text


# ----------------------------------------------------------------------------- output directories
def test_rerunning_into_a_directory_with_checkpoints_is_refused(finished, tmp_path, capsys, caplog):
    path, out = finished
    train = load_tool("train")
    assert train.main(["-c", path]) == 2
    err = capsys.readouterr().err
    assert f"Global.output_dir: {out} already holds checkpoints of an earlier run" in err
    assert "Global.checkpoints=auto" in err and "Global.overwrite=true" in err
    # overwrite: the earlier run's names go (no epoch_2 of the old run next to the new run's epoch_1)
    copy = tmp_path / "copy"
    shutil.copytree(os.path.dirname(out), copy, symlinks=True)
    assert train.main(["-c", path, "-o", f"Global.output_dir={copy}", "-o", "Global.overwrite=true",
                       "-o", "Global.epochs=1"]) == 0
    assert CheckpointStore(str(copy / ARCH)).names() == ["best_model", "best_model_ema", "latest", "epoch_1"]
    assert "Global.overwrite: removed the earlier run's checkpoints" in caplog.text


def test_two_runs_cannot_share_an_output_directory(demo_root, tmp_path, capsys):
    path, out = tiny_run(demo_root, tmp_path, epochs=1)
    with OutputDirLock(out):
        assert load_tool("train").main(["-c", path]) == 2
    err = capsys.readouterr().err
    assert f"{out} is in use by another training run (pid {os.getpid()}" in err
    assert not os.path.exists(os.path.join(out, "latest.pdparams"))


def test_a_lock_left_by_a_dead_process_is_taken_over(demo_root, tmp_path, caplog):
    path, out = tiny_run(demo_root, tmp_path, epochs=1)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    os.makedirs(out)
    with open(os.path.join(out, ".ppfreeze.lock"), "w") as f:   # as a killed run leaves it: content, no flock
        json.dump({"pid": int(dead.stdout), "host": "here", "since": "earlier"}, f)
    Engine(load_config(path), "train").train()
    assert f"was left by pid {int(dead.stdout)} on here" in caplog.text and "taking it over" in caplog.text
    assert not os.path.exists(os.path.join(out, ".ppfreeze.lock"))
