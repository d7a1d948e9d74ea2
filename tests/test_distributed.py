"""Data-parallel training through paddle.distributed.launch (2 CPU processes over gloo)."""
import os
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_launch_two_cpu_ranks_with_unfreeze_milestone(demo_root, tmp_path):
    """Stage2 is unfrozen at epoch 2; the engine's rank-consistency check stops the run if the ranks'
    weights differ after any epoch (they do if DataParallel was built without the later-trainable
    parameters: verified by disabling that part of Engine._wrap_distributed)."""
    from conftest import tiny_config
    cfg = tiny_config(demo_root, str(tmp_path / "out"), "ResNet18", epochs=2)
    cfg["Global"]["max_train_steps"] = 2
    cfg["Freeze"] = {"until": "stage2", "allow_random_frozen": True,
                     "schedule": [{"epoch": 2, "unfreeze": ["stage2"]}]}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
                           "--log_dir", str(tmp_path / "log"), os.path.join(ROOT, "tools", "train.py"),
                           "-c", str(path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    log0 = (tmp_path / "log" / "workerlog.0").read_text()
    assert proc.returncode == 0, proc.stdout[-3000:] + log0[-3000:]
    assert "epoch 2 milestone applied" in log0
    assert "frozen tensors unchanged" in log0
    assert os.path.isfile(tmp_path / "out" / "ResNet18" / "epoch_2.pdparams")
