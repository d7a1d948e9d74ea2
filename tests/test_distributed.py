"""Data-parallel training through paddle.distributed.launch (2 CPU processes over gloo)."""
import os
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Trains like tools/train.py, but builds DataParallel in the current (not the most unfrozen)
# freeze state: the pitfall FreezeController.wrap_data_parallel exists to avoid.
UNGUARDED = """
import sys
sys.path.insert(0, {root!r}); sys.path.insert(0, {tools!r})
from ppfreeze.engine.freezing import FreezeController
FreezeController.wrap_data_parallel = lambda self, model, wrap: wrap(model)
import train
sys.exit(train.main(sys.argv[1:]))
"""


def _launch(script, demo_root, tmp_path):
    from conftest import tiny_config
    cfg = tiny_config(demo_root, str(tmp_path / "out"), "ResNet18", epochs=2)
    cfg["Global"]["max_train_steps"] = 2
    cfg["Freeze"] = {"until": "stage2", "allow_random_frozen": True,
                     "schedule": [{"epoch": 2, "unfreeze": ["stage2"]}]}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
                           "--log_dir", str(tmp_path / "log"), script, "-c", str(path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    return proc, (tmp_path / "log" / "workerlog.0").read_text()


def test_launch_two_cpu_ranks_with_unfreeze_milestone(demo_root, tmp_path):
    """Stage2 is unfrozen at epoch 2; the engine's rank-consistency check stops the run if the ranks'
    weights differ after any epoch (the next test shows they do without the guard)."""
    proc, log0 = _launch(os.path.join(ROOT, "tools", "train.py"), demo_root, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + log0[-3000:]
    assert "epoch 2 milestone applied" in log0
    assert "frozen tensors unchanged" in log0
    assert os.path.isfile(tmp_path / "out" / "ResNet18" / "epoch_2.pdparams")


def test_ranks_drift_apart_without_registering_later_unfrozen_parameters(demo_root, tmp_path):
    script = tmp_path / "unguarded_train.py"
    script.write_text(UNGUARDED.format(root=ROOT, tools=os.path.join(ROOT, "tools")))
    proc, log0 = _launch(str(script), demo_root, tmp_path)
    assert proc.returncode != 0
    # stage2 (ResNet18 blocks.2-3) was frozen when the wrapper was built: its gradients are never
    # all-reduced after the epoch-2 milestone, and the consistency check names them
    assert "epoch 2 milestone applied" in log0
    assert "ranks hold different values" in log0 and "blocks.2." in log0, log0[-3000:]

