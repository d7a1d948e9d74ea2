"""What ``Freeze.cache_features: auto`` saves: the same fine-tune with and without the cache.

Runs a config twice in one go (each in its own process), with ``cache_features`` auto and
false, and prints the training time of each epoch side by side, the ratio, and whether the two
runs ended with bit-identical weights. The default config is the FixRes fine-tune (the whole
trunk frozen, deterministic transforms), starting from random weights so no earlier run is needed.

    python benchmarks/feature_cache.py
    python benchmarks/feature_cache.py -c configs/FixRes/ResNet18_FixRes_finetune.yaml --epochs 4
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

from _child import run_json_child  # noqa: E402  (benchmarks/ is the script's own folder)


def run_child(args) -> None:
    """Train once and print per-epoch seconds and a digest of the final weights as JSON."""
    import hashlib

    import numpy as np

    from ppfreeze.config import load_config
    from ppfreeze.runtime_env import configure_threads

    config = load_config(args.config, [f"Freeze.cache_features={args.mode}", f"Global.epochs={args.epochs}",
                                       "Global.pretrained_model=null", "Freeze.allow_random_frozen=true",
                                       "Global.eval_during_train=false", f"Global.output_dir={args.out}"])
    configure_threads(config["Global"].get("num_threads"))  # as tools/train.py does, before paddle is imported
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from make_demo_data import ensure_demo_data
    from ppfreeze.engine import Engine
    from ppfreeze.engine.callbacks import Callback

    class EpochTimer(Callback):
        """Training time of each epoch (it runs first: checkpoint saves are not counted)."""

        def __init__(self):
            self.seconds, self._t = [], 0.0

        def on_epoch_begin(self, engine, epoch):
            self._t = time.perf_counter()

        def on_epoch_end(self, engine, epoch, metrics):
            self.seconds.append(time.perf_counter() - self._t)

    timer = EpochTimer()

    class TimedEngine(Engine):
        def _build_callbacks(self):
            callbacks = super()._build_callbacks()
            callbacks.callbacks.insert(0, timer)
            return callbacks

    engine = TimedEngine(config, "train")
    ensure_demo_data(config)
    engine.train()
    digest = hashlib.sha256(b"".join(np.array(v).tobytes() for _, v in sorted(engine.model.state_dict().items())))
    print(json.dumps({"epochs": timer.seconds, "digest": digest.hexdigest()}))


def measure(args, mode: str, out: str) -> dict:
    return run_json_child(__file__, ["--mode", mode, "-c", args.config, "--epochs", str(args.epochs), "--out", out],
                          cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", default=os.path.join(ROOT, "configs", "FixRes", "ResNet18_FixRes_finetune.yaml"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_child(args)
    with tempfile.TemporaryDirectory() as tmp:
        rows = {mode: measure(args, mode, os.path.join(tmp, mode)) for mode in ("false", "auto")}
    print(f"{os.path.relpath(args.config, ROOT)}, {args.epochs} epochs, training time per epoch (s)")
    print(f"{'epoch':>5} {'no cache':>9} {'cache':>9} {'ratio':>7}")
    for i, (a, b) in enumerate(zip(rows["false"]["epochs"], rows["auto"]["epochs"]), 1):
        print(f"{i:>5} {a:>9.2f} {b:>9.2f} {b / a:>7.3f}")
    total_a, total_b = sum(rows["false"]["epochs"]), sum(rows["auto"]["epochs"])
    print(f"{'all':>5} {total_a:>9.2f} {total_b:>9.2f} {total_b / total_a:>7.3f}")
    same = rows["false"]["digest"] == rows["auto"]["digest"]
    print(f"final weights bit-identical with and without the cache: {same}")


if __name__ == "__main__":
    main()
