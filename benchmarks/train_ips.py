"""Training images/s: ppfreeze's ``tools/train.py`` path against a bare Paddle dygraph loop.

Both train the same model (built by ``ppfreeze.arch.build_model``) on the same synthetic JPEG
files with the same pipeline (decode, random crop to 224, flip, normalise; the ops of
``ppfreeze.data``), batch, optimizer (Momentum 0.9 + L2 1e-4) and CPU threads, each in its own
process, alternating within one run (A B B A ...), so each round's ratio saw the same load.

- ours: ``tools/train.py`` with a PaddleClas-style config (CELoss, TopkAcc in training, Cosine LR,
  ``print_batch_step`` 10) and ppfreeze's default loader settings (no ``loader`` section) and
  default threads;
- bare: a hand-written loop: ``paddle.io.DataLoader`` (the same worker count) -> forward ->
  cross_entropy -> backward -> step -> clear_grad.

Images/s are over the steps after ``--warmup``; "reader" is the share of that wall time the loop
waited for its next batch; "cores" is CPU seconds of the process tree (workers included) per
wall second. The load average is printed with every number: other jobs on the machine make
the absolute numbers noisy; read the per-round ratios.

    python benchmarks/train_ips.py                                  # ResNet50, PPLCNet_x1_0, DeiT_tiny
    python benchmarks/train_ips.py --models PPLCNet_x1_0 --rounds 3 --iters 8
    python benchmarks/train_ips.py --models PPLCNet_x1_0 --profile  # cProfile of ours' measured steps
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

from _child import run_json_child  # noqa: E402  (benchmarks/ is the script's own folder)
from _train_bench import (TRAIN_OPS, StepClock, cores_text, env_without_threads,  # noqa: E402
                          make_synthetic_images, measure_rounds, median_ratio, print_json, rotated, run_ours)

DEFAULT_BATCH = {"ResNet50": 16, "PPLCNet_x1_0": 32}
TARGET = 0.97


def ours_config(args, model: str, batch: int, list_path: str, out_dir: str) -> str:
    """A PaddleClas-style ImageNet config for ``model`` (written as YAML); returns its path."""
    import yaml
    ops = [dict(op) for op in TRAIN_OPS]
    ops[1] = {"RandCropImage": {"size": args.size}}
    loader = {} if args.num_workers is None else {"loader": {"num_workers": args.num_workers}}
    config = {
        "Global": {"device": "cpu", "output_dir": out_dir, "epochs": 1, "iter_per_epoch": args.warmup + args.iters,
                   "eval_during_train": False, "print_batch_step": 10, "save_interval": 1, "use_visualdl": False,
                   "image_shape": [3, args.size, args.size], "seed": 0, "pretrained_model": None,
                   "checkpoints": None},
        "Arch": {"name": model, "class_num": 1000},
        "Loss": {"Train": [{"CELoss": {"weight": 1.0}}]},
        "Optimizer": {"name": "Momentum", "momentum": 0.9, "lr": {"name": "Cosine", "learning_rate": 0.1},
                      "regularizer": {"name": "L2", "coeff": 1e-4}},
        "DataLoader": {"Train": {
            "dataset": {"name": "ImageNetDataset", "image_root": os.path.dirname(list_path),
                        "cls_label_path": list_path, "transform_ops": ops},
            "sampler": {"name": "DistributedBatchSampler", "batch_size": batch, "drop_last": False,
                        "shuffle": True}, **loader}},
        "Metric": {"Train": [{"TopkAcc": {"topk": [1, 5]}}]},
    }
    path = os.path.join(out_dir, f"{model}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    return path


# ----------------------------------------------------------------------------- measured processes
def child_ours(args) -> None:
    profiler = _profiler(args)
    clock = StepClock(args.batch, args.warmup, args.warmup + args.iters, profiler)
    run_ours(args.config, [], clock)
    from ppfreeze.runtime_env import threads_in_effect
    print_json({**clock.summary(), "threads": threads_in_effect()[0]})


def child_bare(args) -> None:
    """The hand-written loop (threads come from OMP_NUM_THREADS, set by the parent)."""
    import time

    import numpy as np
    import paddle
    from ppfreeze.arch import build_model
    from ppfreeze.data import create_operators
    from ppfreeze.runtime_env import threads_in_effect

    class Images(paddle.io.Dataset):
        def __init__(self, list_path):
            root = os.path.dirname(list_path)
            with open(list_path) as f:
                self.items = [(os.path.join(root, p), int(c)) for p, c in (ln.split() for ln in f)]
            ops_cfg = [dict(op) for op in TRAIN_OPS]
            ops_cfg[1] = {"RandCropImage": {"size": args.size}}
            self.ops = create_operators(ops_cfg)

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            path, label = self.items[i]
            with open(path, "rb") as f:
                x = f.read()
            for op in self.ops:
                x = op(x)
            return x.transpose(2, 0, 1) if x.shape[-1] == 3 else x, np.int64(label)

    paddle.seed(0)
    model = build_model({"name": args.model, "class_num": 1000})
    opt = paddle.optimizer.Momentum(learning_rate=0.1, momentum=0.9, parameters=model.parameters(),
                                    weight_decay=paddle.regularizer.L2Decay(1e-4))
    loader = paddle.io.DataLoader(Images(args.list), batch_size=args.batch, shuffle=True, drop_last=False,
                                  num_workers=args.workers, use_shared_memory=True)
    profiler = _profiler(args)
    clock = StepClock(args.batch, args.warmup, args.warmup + args.iters, profiler)
    model.train()
    tic = time.perf_counter()
    for step, (x, y) in enumerate(loader):
        clock.add_reader(time.perf_counter() - tic)
        loss = paddle.nn.functional.cross_entropy(model(x), y.reshape([-1, 1]))
        loss.backward()
        opt.step()
        opt.clear_grad()
        clock.step_end()
        if step + 1 == args.warmup + args.iters:
            break
        tic = time.perf_counter()
    print_json({**clock.summary(), "threads": threads_in_effect()[0]})


def _profiler(args):
    """cProfile over the measured steps when ``--profile``: prints the top functions to stderr."""
    if not args.profile:
        return None
    import cProfile
    import pstats
    prof = cProfile.Profile()

    def toggle(start: bool) -> None:
        if start:
            prof.enable()
            return
        prof.disable()
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    return toggle


# ----------------------------------------------------------------------------- the run
def measure(kind: str, model: str, batch: int, args, list_path: str, work: str, workers: int) -> dict:
    common = ["--model", model, "--batch", str(batch), "--size", str(args.size), "--warmup", str(args.warmup),
              "--iters", str(args.iters), "--list", list_path] + (["--profile", kind] if args.profile == kind else [])
    env = env_without_threads()
    if kind == "ours":
        out = tempfile.mkdtemp(dir=work)
        config = ours_config(args, model, batch, list_path, out)
        extra = ["--config", config]
        if args.threads:
            env["OMP_NUM_THREADS"] = str(args.threads)   # as a user would; the default otherwise
    else:
        out = None
        extra = ["--workers", str(workers)]
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads_resolved)
    try:
        return run_json_child(__file__, [kind] + common + extra, env=env, show_stderr=args.profile == kind)
    finally:
        if out:
            shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["ResNet50", "PPLCNet_x1_0", "DeiT_tiny_patch16_224"])
    parser.add_argument("--batch", type=int, default=None, help="batch for every model (default: ResNet50 16, "
                                                                 "PPLCNet_x1_0 32, others 16)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--warmup", type=int, default=2, help="steps before the measured ones")
    parser.add_argument("--iters", type=int, default=8, help="measured steps per process")
    parser.add_argument("--rounds", type=int, default=2, help="ours/bare pairs per model (order alternates)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: ppfreeze's default)")
    parser.add_argument("--num-workers", type=int, default=None,
                        help="DataLoader workers (default: none set, ppfreeze's default; bare uses the same)")
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "ppfreeze_bench_images"))
    parser.add_argument("--sweep-workers", type=int, nargs="+", default=None, metavar="N",
                        help="instead: ours only, with each loader.num_workers, alternating (reader share per count)")
    parser.add_argument("--profile", choices=["ours", "bare"], default=None,
                        help="cProfile the measured steps of one side (printed to stderr; slows it down)")
    parser.add_argument("--child", choices=["ours", "bare"], help=argparse.SUPPRESS)
    for hidden in ("--model", "--list", "--config"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.profile = args.profile is not None
        return child_ours(args) if args.child == "ours" else child_bare(args)

    from ppfreeze.runtime_env import decide_threads
    from ppfreeze.runtime_env import default_num_workers
    args.threads_resolved = decide_threads(args.threads).count
    workers = args.num_workers if args.num_workers is not None else default_num_workers()
    batches = {m: args.batch or DEFAULT_BATCH.get(m, 16) for m in args.models}
    list_path = make_synthetic_images(args.data_dir, max(batches.values()) * (args.warmup + args.iters))
    work = tempfile.mkdtemp(prefix="train_ips_")
    if args.sweep_workers:
        try:
            return sweep_workers(args, batches, list_path, work, workers)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(f"train images/s, ours (tools/train.py) vs a bare Paddle dygraph loop: {args.size} px, "
          f"{args.threads_resolved} threads, {workers} loader workers, {args.iters} steps after {args.warmup} "
          f"warm-up, {args.rounds} rounds alternating; synthetic 500x375 JPEGs in {args.data_dir}")
    header = (f"{'model':<22} {'batch':>5} {'round':>5} {'ours ips':>9} {'bare ips':>9} {'ratio':>6} "
              f"{'reader ours':>11} {'reader bare':>11} {'cores ours':>10} {'cores bare':>10} "
              f"{'CPU s/img ours/bare':>19} {'load':>5}")
    print(header)
    print("-" * len(header), flush=True)
    results = []
    try:
        for model in args.models:
            pairs = []
            rounds = measure_rounds(args.rounds, ("ours", "bare"),
                                    lambda kind: measure(kind, model, batches[model], args, list_path, work, workers))
            for r, got in enumerate(rounds):
                o, b = got["ours"], got["bare"]
                pairs.append((o["ips"], b["ips"]))
                print(f"{model:<22} {batches[model]:>5} {r + 1:>5} {o['ips']:>9.2f} {b['ips']:>9.2f} "
                      f"{o['ips'] / b['ips']:>6.3f} {o['reader_share']:>11.1%} {b['reader_share']:>11.1%} "
                      f"{cores_text(o):>10} {cores_text(b):>10} {_cpu_per_image(o) + '/' + _cpu_per_image(b):>19} "
                      f"{max(o['load_avg'], b['load_avg']):>5.1f}", flush=True)
                if o["threads"] != b["threads"]:
                    print(f"  WARNING: threads differ: ours {o['threads']}, bare {b['threads']}")
            results.append((model, median_ratio(pairs)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for model, ratio in results:
        verdict = "OK" if ratio >= TARGET else "MISSED"
        print(f"RESULT {model}: ours/bare = {ratio:.3f} (median of {args.rounds} rounds; target >= {TARGET}): "
              f"{verdict}; load avg now {os.getloadavg()[0]:.1f}")


def sweep_workers(args, batches, list_path: str, work: str, default_workers: int) -> None:
    """ours only, once per ``--sweep-workers`` count and round (the order rotates each round)."""
    counts = args.sweep_workers
    print(f"ours (tools/train.py) by loader.num_workers: {args.size} px, {args.threads_resolved} threads, "
          f"{args.iters} steps after {args.warmup} warm-up, {args.rounds} rounds (order rotates); the default "
          f"here is {default_workers}")
    header = (f"{'model':<22} {'batch':>5} {'round':>5} {'workers':>7} {'ips':>8} {'reader':>7} {'cores':>6} "
              f"{'CPU s/img':>9} {'load':>5}")
    print(header)
    print("-" * len(header), flush=True)
    for model in args.models:
        rows = {n: [] for n in counts}
        for r in range(args.rounds):
            for n in rotated(counts, r):
                args.num_workers = n
                got = measure("ours", model, batches[model], args, list_path, work, n)
                rows[n].append(got)
                print(f"{model:<22} {batches[model]:>5} {r + 1:>5} {n:>7} {got['ips']:>8.2f} "
                      f"{got['reader_share']:>7.1%} {cores_text(got):>6} {_cpu_per_image(got):>9} "
                      f"{got['load_avg']:>5.1f}", flush=True)
        for n in counts:
            med = lambda key: statistics.median(g[key] for g in rows[n])  # noqa: E731
            print(f"RESULT {model} num_workers={n}: median ips {med('ips'):.2f}, reader share "
                  f"{med('reader_share'):.1%} (target < 5%), {args.rounds} rounds; load avg now "
                  f"{os.getloadavg()[0]:.1f}")


def _cpu_per_image(r: dict) -> str:
    return "?" if r.get("cpu_s_per_image") is None else f"{r['cpu_s_per_image']:.3f}"


if __name__ == "__main__":
    main()
