"""CPU inference latency: dygraph eval vs paddle.inference (oneDNN off / on), in one run.

For each model and batch size it exports the model (random weights: speed does not depend on
them), then times the same batch through the three back-ends and prints one table with
per-image latency, images/s and the speed-up over dygraph (target: paddle.inference + oneDNN
>= 3x dygraph throughput on CPU).

    python benchmarks/infer_latency.py                           # ResNet50 + PPLCNet_x1_0, 224 px, batch 1 and 8
    python benchmarks/infer_latency.py --threads 4 --iters 20 --size 160 --models ResNet50
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from typing import Callable, Dict, List

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["ResNet50", "PPLCNet_x1_0"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads for every back-end")
    parser.add_argument("--iters", type=int, default=10, help="timed iterations per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    return parser.parse_args(argv)


def seconds_per_batch(fn: Callable[[], object], iters: int, warmup: int) -> float:
    """Median wall time of ``fn`` (median: robust to a busy shared machine)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return float(np.median(times))


def load_predictor_class():
    spec = importlib.util.spec_from_file_location("ppfreeze_deploy_predictor",
                                                  os.path.join(ROOT, "deploy", "python", "predictor.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Predictor


def measure_model(name: str, args: argparse.Namespace, work_dir: str) -> List[Dict[str, object]]:
    """Rows (model, batch, backend, seconds per batch) for one model."""
    import paddle
    from ppfreeze.arch import build_model
    from ppfreeze.export.exporter import save_program
    from ppfreeze.export.wrapper import InferenceModel, OutputOptions
    Predictor = load_predictor_class()
    paddle.seed(0)
    model = build_model({"name": name, "class_num": 1000})
    model.eval()
    model_dir = os.path.join(work_dir, name)
    save_program(InferenceModel(model, OutputOptions("logits", True)), [3, args.size, args.size], model_dir)
    backends = {
        "dygraph eval": None,
        "inference, oneDNN off": Predictor(model_dir, enable_mkldnn=False, cpu_num_threads=args.threads),
        "inference, oneDNN on": Predictor(model_dir, enable_mkldnn=True, cpu_num_threads=args.threads),
    }
    rows = []
    for batch_size in args.batch_sizes:
        batch = np.random.default_rng(0).standard_normal((batch_size, 3, args.size, args.size)).astype("float32")
        for backend, predictor in backends.items():
            if predictor is None:
                def run():
                    with paddle.no_grad():
                        return paddle.nn.functional.softmax(model(paddle.to_tensor(batch)), axis=-1).numpy()
            else:
                def run(p=predictor):
                    return p.run(batch)
            rows.append({"model": name, "batch": batch_size, "backend": backend,
                         "seconds": seconds_per_batch(run, args.iters, args.warmup)})
    return rows


def format_table(rows: List[Dict[str, object]]) -> str:
    """Markdown table; speed-up is throughput relative to dygraph at the same model and batch."""
    base = {(r["model"], r["batch"]): r["seconds"] for r in rows if r["backend"] == "dygraph eval"}
    lines = ["| model | batch | backend | ms / image | images / s | speed-up vs dygraph |",
             "| --- | ---: | --- | ---: | ---: | ---: |"]
    for r in rows:
        per_image = r["seconds"] / r["batch"]
        lines.append(f"| {r['model']} | {r['batch']} | {r['backend']} | {1000 * per_image:.2f} | "
                     f"{1 / per_image:.1f} | {base[(r['model'], r['batch'])] / r['seconds']:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    # Paddle pins OMP_NUM_THREADS=1 when unset (docs/design.md); dygraph must get the same threads.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    rows: List[Dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="ppfreeze-latency-") as work_dir:
        for name in args.models:
            rows += measure_model(name, args, work_dir)
    print(f"\nCPU inference latency: {args.size} px, {args.threads} threads, median of {args.iters} runs "
          f"after {args.warmup} warm-up\n")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
