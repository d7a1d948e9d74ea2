"""test_tipc/: the PaddleClas-shaped train -> eval -> export -> inference chain.

The chain runs for real (test_tipc/prepare.sh + test_train_inference_python.sh in
lite_train_lite_infer) for one CNN and for the Freeze config, in a temporary mirror of the
repository (symlinks), so data, weights and logs never land in the checkout. The numeric checks
are shown to fail on a tampered result and a tampered frozen tensor, and a broken export command
injected through a config file makes the script exit 1 with the command named in the log.
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

from _scripts import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CNN_CONFIG = "test_tipc/configs/PPLCNet/PPLCNet_x0_25_train_infer_python.txt"
FREEZE_CONFIG = "test_tipc/configs/ResNet/ResNet18_freeze_train_infer_python.txt"
MODE = "lite_train_lite_infer"
SHARED = ("ppfreeze", "tools", "deploy", "configs")
TIPC_FILES = ("common_func.sh", "prepare.sh", "test_train_inference_python.sh", "compare_results.py",
              "demo_data_overrides.py", "make_pretrained.py", "configs")

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the TIPC scripts are bash")


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """A directory that looks like the repository root (symlinks) but keeps outputs to itself."""
    root = tmp_path_factory.mktemp("tipc")
    for name in SHARED:
        os.symlink(os.path.join(ROOT, name), root / name)
    (root / "test_tipc").mkdir()
    for name in TIPC_FILES:
        os.symlink(os.path.join(ROOT, "test_tipc", name), root / "test_tipc" / name)
    return root


def _env():
    env = dict(os.environ)
    # `python:python` in the configs must be this interpreter; one thread each on a shared machine.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def bash(root, *args, timeout=600):
    return subprocess.run(["bash", *args], cwd=root, env=_env(), capture_output=True, text=True, timeout=timeout)


def run_chain(root, config, mode=MODE):
    """prepare.sh then test_train_inference_python.sh; returns (process, results_python.log text)."""
    prepared = bash(root, "test_tipc/prepare.sh", config, mode)
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    proc = bash(root, "test_tipc/test_train_inference_python.sh", config, mode)
    model = re.search(r"^model_name:(\S+)", open(os.path.join(root, config)).read(), re.M).group(1)
    log = (root / "test_tipc" / "output" / model / "results_python.log").read_text()
    return proc, log


def status_lines(log, status):
    return [ln for ln in log.splitlines() if ln.startswith(f" Run {status} with command - ")]


def logged_command(log, script):
    """The command of the (last) 'Run successfully' line that runs ``script``, split into words."""
    lines = [ln for ln in status_lines(log, "successfully") if f"python {script} " in ln]
    assert lines, f"no successful {script} command in the log"
    command = lines[-1].split(" - ", 2)[2].rsplit(" - ", 1)[0]
    return shlex.split(command)


@pytest.fixture(scope="module")
def cnn_run(mirror):
    return run_chain(mirror, CNN_CONFIG)


@pytest.fixture(scope="module")
def freeze_run(mirror):
    return run_chain(mirror, FREEZE_CONFIG)


def test_cnn_chain_runs_every_step_and_agrees_with_dygraph(mirror, cnn_run):
    proc, log = cnn_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not status_lines(log, "failed")
    ok = status_lines(log, "successfully")
    for script in ("tools/train.py", "tools/eval.py", "tools/export_model.py", "test_tipc/compare_results.py infer"):
        assert sum(f"python {script}" in ln for ln in ok) == 1, script
    infer = [ln for ln in ok if "deploy/python/predict_cls.py" in ln]
    assert len(infer) == 4  # enable_mkldnn True|False x batch_size 1|6
    for flags in ("enable_mkldnn=True", "enable_mkldnn=False", "batch_size=1", "batch_size=6"):
        assert sum(flags in ln for ln in infer) == 2
    # The lite set is what trained: the logged train command redirects the demo paths to it.
    assert "cls_label_path=./dataset/tipc_lite/ppfreeze_demo/train_list.txt" in [
        ln for ln in ok if "tools/train.py" in ln][0]
    out = mirror / "test_tipc" / "output" / "PPLCNet_x0_25" / MODE
    compare = (out / "compare_infer_gpus_-1.log").read_text()
    assert "compare infer: 4/4 results files agree with dygraph" in compare
    assert compare.count("24 images agree with dygraph") == 4
    results = _json_lines(out / "python_infer_cpu_gpus_-1_usemkldnn_True_threads_1_batchsize_6.json")
    assert len(results) == 24 and len(results[0]["class_ids"]) == 12  # Topk over every class
    if "Run skipped (no GPU)" in log:  # a CPU machine: the GPU runs are logged, not failed
        assert re.search(r"Run skipped \(no GPU\) with command - PPLCNet_x0_25 - python tools/train.py .*"
                         r"Global.device=gpu", log)


def _json_lines(path):
    """What the deploy tools' save_results writes: one JSON object per line."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_freeze_chain_keeps_frozen_tensors_bit_identical(mirror, freeze_run):
    proc, log = freeze_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not status_lines(log, "failed")
    frozen_cmd = logged_command(log, "test_tipc/compare_results.py frozen")
    assert "--train-dir" in frozen_cmd
    train = logged_command(log, "tools/train.py")
    assert "Global.pretrained_model=./test_tipc/pretrained/ResNet18_freeze" in train
    assert "Freeze.schedule.0.epoch=2" in train
    report = (mirror / "test_tipc" / "output" / "ResNet18_freeze" / MODE /
              "norm_train_gpus_-1_autocast_null_frozen.log").read_text()
    # Epoch 1: stem + stage1 frozen; the milestone unfreezes stage1 at epoch 2, the stem stays.
    assert re.search(r"OK   epoch_1\.pdparams: the \d+ tensors frozen through epoch 1 \(stem 5, stage1 \d+\)", report)
    assert "OK   latest.pdparams: the 5 tensors frozen through epoch 2 (stem 5)" in report


def test_compare_infer_fails_on_a_tampered_score(mirror, freeze_run, monkeypatch, capsys):
    compare_results = _compare_module()
    _, log = freeze_run
    args = logged_command(log, "test_tipc/compare_results.py infer")[2:]
    out = mirror / "test_tipc" / "output" / "ResNet18_freeze" / MODE
    source = out / "python_infer_cpu_gpus_-1_usemkldnn_False_threads_1_batchsize_1.json"
    results = _json_lines(source)
    results[3]["scores"][1] = round(results[3]["scores"][1] + 0.002, 5)
    tampered = out / "tampered.json"
    tampered.write_text("".join(json.dumps(r) + "\n" for r in results))
    args[args.index("--results") + 1] = str(tampered)
    monkeypatch.chdir(mirror)
    assert compare_results.main(args) == 1
    printed = capsys.readouterr().out
    assert "FAIL tampered.json: " + results[3]["file_name"] in printed
    assert compare_results.main(args[:args.index("--results") + 1] + [str(source)]) == 0


def test_compare_frozen_fails_on_a_one_ulp_change(mirror, freeze_run, monkeypatch, capsys, tmp_path):
    import paddle
    compare_results = _compare_module()
    _, log = freeze_run
    train_dir = logged_command(log, "test_tipc/compare_results.py frozen")[-1]
    copy = tmp_path / "run"
    shutil.copytree(os.path.join(mirror, train_dir), copy)
    state = paddle.load(str(copy / "latest.pdparams"))
    name = next(n for n in state if n.startswith("stem.") and n.endswith("weight"))
    weight = np.asarray(state[name]).copy()
    weight.flat[0] = np.nextafter(weight.flat[0], np.float32(np.inf), dtype=np.float32)
    state[name] = paddle.to_tensor(weight)
    paddle.save(state, str(copy / "latest.pdparams"))
    monkeypatch.chdir(mirror)
    assert compare_results.main(["frozen", "--train-dir", str(copy)]) == 1
    printed = capsys.readouterr().out
    assert re.search(rf"FAIL latest\.pdparams: 1 of 5 tensors frozen through epoch 2 differ .*{re.escape(name)}", printed)
    assert "OK   epoch_1.pdparams" in printed


def test_a_broken_export_fails_the_run_and_names_the_command(mirror, tmp_path):
    text = open(os.path.join(ROOT, "test_tipc/configs/ShuffleNet/ShuffleNetV2_x0_25_train_infer_python.txt")).read()
    broken = re.sub(r"^(norm_export:.*)$", r"\1 -o Global.export_format=broken", text, count=1, flags=re.M)
    broken = re.sub(r"^model_name:.*$", "model_name:ShuffleNetV2_broken_export", broken, count=1, flags=re.M)
    broken = re.sub(r"^eval:.*$", "eval:null", broken, count=1, flags=re.M)  # no eval step: saves time
    assert broken.count("export_format=broken") == 1
    config = tmp_path / "broken_train_infer_python.txt"
    config.write_text(broken)
    proc, log = run_chain(mirror, str(config))
    assert proc.returncode == 1
    failed = status_lines(log, "failed")
    assert len(failed) == 1
    assert "python tools/export_model.py -c configs/quick_start/ResNet18.yaml" in failed[0]
    assert "Global.export_format=broken" in failed[0]
    assert failed[0].endswith("norm_train_gpus_-1_autocast_null_export.log !")
    assert re.search(r"Run skipped \(export failed\) with command - .*predict_cls\.py", log)
    assert any("python tools/train.py" in ln for ln in status_lines(log, "successfully"))
    assert "tools/eval.py" not in log
    assert "1 failed" in log.splitlines()[-1]
    assert "Global.export_format" in proc.stderr  # the failing step's log tail is shown


def test_usage_errors_exit_2(mirror):
    for args in ([], [CNN_CONFIG], [CNN_CONFIG, "lite_train"], ["test_tipc/configs/nope.txt", MODE]):
        proc = bash(mirror, "test_tipc/test_train_inference_python.sh", *args, timeout=60)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert proc.stderr.strip()


def test_config_parsing(mirror, tmp_path):
    config = tmp_path / "x_train_infer_python.txt"
    config.write_text("===========================train_params===========================\n"
                      "model_name:X\n-o Global.epochs:lite_train_lite_infer=2|whole_train_whole_infer=120\n"
                      "norm_train:tools/train.py -c a.yaml -o Global.seed=1\nnull:null\n##\n"
                      "===========================infer_params===========================\n"
                      "-o Global.batch_size:1|6\n-o Global.infer_imgs:./a/ppfreeze_demo/images\n")
    script = ("source test_tipc/common_func.sh && tipc_load \"$1\" && "
              "tipc_value train_params '-o Global.epochs' lite_train_lite_infer && "
              "tipc_value train_params '-o Global.epochs' whole_infer && "
              "tipc_script_args \"$(tipc_get train_params norm_train)\" && "
              "tipc_config_of \"$(tipc_get train_params norm_train)\" && "
              "tipc_split \"$(tipc_get infer_params '-o Global.batch_size')\" && "
              "tipc_demo_root \"$(tipc_get infer_params '-o Global.infer_imgs')\" && "
              "tipc_flag '-o Global.epochs' null && echo end")
    proc = bash(mirror, "-u", "-c", script, "bash", str(config), timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["2", "null", "-c a.yaml -o Global.seed=1", "a.yaml", "1", "6",
                                        "./a/ppfreeze_demo", "end"]
    config.write_text(config.read_text() + "-o Global.batch_size:2\n")
    proc = bash(mirror, "-u", "-c", "source test_tipc/common_func.sh && tipc_load \"$1\"", "bash", str(config),
                timeout=30)
    assert proc.returncode == 2 and "appears twice" in proc.stderr


def _compare_module():
    return load_script("test_tipc/compare_results.py", "tipc_compare_results")
