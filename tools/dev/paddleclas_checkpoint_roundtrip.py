"""Check checkpoints across tools against PaddleClas's own trainer (a local PaddleClas checkout).

For each case (ResNet18 + Momentum + warmup/cosine; PPLCNet_x0_25 + AdamW + EMA), on 8 tiny images
with deterministic transforms and no shuffling, so that the two trainers see the same batches:

1. PaddleClas trains 3 epochs straight; ppfreeze resumes from PaddleClas's ``epoch_1`` and
   trains epochs 2-3: the weights (and EMA weights) must equal PaddleClas's ``epoch_3``.
2. ppfreeze trains 3 epochs straight; ``tools/export_paddleclas_checkpoint.py`` writes its
   ``epoch_1`` in PaddleClas's layout; PaddleClas resumes from it (``-o Global.checkpoints=``)
   and trains epochs 2-3: its weights must equal ppfreeze's ``epoch_3``.

    python tools/dev/paddleclas_checkpoint_roundtrip.py --paddleclas /work/pc --python /work/pcenv/bin/python

Run from the repository root with ppfreeze's Python; ``--python`` runs PaddleClas.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)

NORMALIZE = {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                "order": ""}}
CASES = {
    "ResNet18_Momentum": ({"name": "ResNet18", "class_num": 4}, None,
                          {"name": "Momentum", "momentum": 0.9, "lr": {"name": "Cosine", "learning_rate": 0.1,
                                                                      "warmup_epoch": 1},
                           "regularizer": {"name": "L2", "coeff": 0.0001}}),
    "PPLCNet_AdamW_EMA": ({"name": "PPLCNet_x0_25", "class_num": 4, "dropout_prob": 0.0}, {"decay": 0.9},
                          {"name": "AdamW", "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "weight_decay": 0.05,
                           "one_dim_param_no_weight_decay": True,
                           "lr": {"name": "Cosine", "learning_rate": 0.01, "eta_min": 1e-5, "warmup_epoch": 1,
                                  "warmup_start_lr": 1e-4}}),
}


def make_data(root: str) -> None:
    import cv2
    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    lines = []
    for i in range(8):
        image = (rng.random((40, 40, 3)) * 60 + (i % 4) * 45).astype(np.uint8)
        cv2.imwrite(os.path.join(root, "images", f"img_{i}.png"), image)
        lines.append(f"images/img_{i}.png {i % 4}")
    with open(os.path.join(root, "train_list.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def write_config(path: str, data: str, arch: dict, ema, optimizer: dict) -> None:
    """A config in PaddleClas's format that both trainers run unchanged."""
    cfg = {
        "Global": {"checkpoints": None, "pretrained_model": None, "output_dir": "./unused", "device": "cpu",
                   "save_interval": 1, "eval_during_train": False, "eval_interval": 1, "epochs": 3,
                   "print_batch_step": 1, "use_visualdl": False, "image_shape": [3, 32, 32], "seed": 0},
        "Arch": arch, "Loss": {"Train": [{"CELoss": {"weight": 1.0}}]}, "Optimizer": optimizer,
        "DataLoader": {"Train": {
            "dataset": {"name": "ImageNetDataset", "image_root": data + "/",
                        "cls_label_path": os.path.join(data, "train_list.txt"),
                        "transform_ops": [{"DecodeImage": {"to_rgb": True, "channel_first": False}},
                                          {"ResizeImage": {"size": 32}}, NORMALIZE]},
            "sampler": {"name": "DistributedBatchSampler", "batch_size": 4, "drop_last": False, "shuffle": False},
            "loader": {"num_workers": 0, "use_shared_memory": False}}},
    }
    if ema:
        cfg["EMA"] = ema
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)


def run(cmd: list, cwd: str, log: str) -> None:
    with open(log, "w") as f:
        result = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
    if result.returncode:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(cmd)}; see {log}")


def compare(ours: str, theirs: str, ema: bool) -> list:
    """Lines comparing ppfreeze checkpoint ``ours`` with PaddleClas checkpoint ``theirs``."""
    from ppfreeze.utils.safe_load import load_file
    # PaddleClas with EMA: .pdparams = EMA weights, .pdema = trained weights (ours: the other way round)
    pairs = [("trained", ".pdparams", ".pdema" if ema else ".pdparams")] + ([("EMA", ".pdema", ".pdparams")] if ema else [])
    lines = []
    for what, our_suffix, their_suffix in pairs:
        a, b = load_file(ours + our_suffix), load_file(theirs + their_suffix)
        same = sum(np.array_equal(a[k], b[k]) for k in a if k in b)
        diff = max(float(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64)).max()) for k in a)
        ok = set(a) == set(b) and same == len(a)
        lines.append((ok, f"{what} weights: {same}/{len(a)} tensors bit-identical, max |diff| {diff:.3g}"))
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--paddleclas", required=True, help="path of a PaddleClas checkout")
    p.add_argument("--python", required=True, help="a Python that runs PaddleClas (its venv)")
    p.add_argument("--work", default=None, help="working directory (default: a new temporary one)")
    args = p.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="pc_roundtrip_")
    data = os.path.join(work, "data")
    make_data(data)
    pc_train = [args.python, os.path.join(args.paddleclas, "tools", "train.py")]
    ours_train = [sys.executable, os.path.join(ROOT, "tools", "train.py")]
    failed = 0
    for case, (arch, ema, optimizer) in CASES.items():
        base = os.path.join(work, case)
        os.makedirs(base, exist_ok=True)
        cfg = os.path.join(base, "config.yaml")
        write_config(cfg, data, arch, ema, optimizer)
        name = arch["name"]
        # 1. PaddleClas -> ppfreeze
        run(pc_train + ["-c", cfg, "-o", f"Global.output_dir={base}/pc_straight/"], args.paddleclas, f"{base}/1a.log")
        run(ours_train + ["-c", cfg, "-o", f"Global.output_dir={base}/ours_resumed",
                          "-o", f"Global.checkpoints={base}/pc_straight/epoch_1"], ROOT, f"{base}/1b.log")
        results = [("PaddleClas epoch_1 -> ppfreeze epochs 2-3 vs PaddleClas straight", line)
                   for line in compare(f"{base}/ours_resumed/{name}/latest", f"{base}/pc_straight/epoch_3", bool(ema))]
        # 2. ppfreeze -> PaddleClas
        run(ours_train + ["-c", cfg, "-o", f"Global.output_dir={base}/ours_straight"], ROOT, f"{base}/2a.log")
        run([sys.executable, os.path.join(ROOT, "tools", "export_paddleclas_checkpoint.py"), "-c", cfg,
             "--checkpoint", f"{base}/ours_straight/{name}/epoch_1", "--output", f"{base}/exported/epoch_1"],
            ROOT, f"{base}/2b.log")
        run(pc_train + ["-c", cfg, "-o", f"Global.checkpoints={base}/exported/epoch_1",
                        "-o", f"Global.output_dir={base}/pc_resumed/"], args.paddleclas, f"{base}/2c.log")
        results += [("ppfreeze epoch_1 -> export -> PaddleClas epochs 2-3 vs ppfreeze straight", line)
                    for line in compare(f"{base}/ours_straight/{name}/latest", f"{base}/pc_resumed/latest", bool(ema))]
        for what, (ok, line) in results:
            failed += not ok
            print(f"{'OK  ' if ok else 'FAIL'} {case}: {what}: {line}", flush=True)
    print(f"work directory: {work}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
