"""What freezing costs and saves: step time and peak memory per freezing method.

Freezes stem + stage1..stage3 with each method and measures a training step side by side with
full fine-tuning and with a forward-only pass, in one run (each variant in its own process so
peak RSS is its own). Prints a table and ratios; read the ratios, not the seconds.

    python benchmarks/freeze_cost.py                       # ResNet50 and ResNet18, batch 16, 128 px
    python benchmarks/freeze_cost.py --models ResNet50 --batch 8 --size 96 --steps 3 --threads 2
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from _child import run_json_child  # noqa: E402  (benchmarks/ is the script's own folder)

VARIANTS = ["full", "lr_zero", "clear_grad", "stop_gradient", "cut", "forward_only"]


def run_child(args) -> None:
    """Measure one variant in this process and print one JSON line."""
    import numpy as np
    import paddle
    from ppfreeze.arch import build_model
    from ppfreeze.freeze import build_freeze_plan

    paddle.seed(0)
    model = build_model({"name": args.model, "class_num": 100})
    method = args.variant if args.variant not in ("full", "forward_only") else None
    plan = build_freeze_plan({"until": "stage3", "method": method, "allow_random_frozen": True} if method else None,
                             model)
    plan.apply(model, 1)
    params = [p for _, p in plan.optimizer_parameters(model)]
    opt = paddle.optimizer.Momentum(learning_rate=0.01, momentum=0.9, parameters=params,
                                    weight_decay=paddle.regularizer.L2Decay(1e-4))
    x = paddle.to_tensor(np.random.RandomState(0).rand(args.batch, 3, args.size, args.size).astype("float32"))
    y = paddle.to_tensor(np.random.RandomState(1).randint(0, 100, (args.batch,)).astype("int64"))
    model.train()

    def step():
        if args.variant == "forward_only":
            with paddle.no_grad():
                model(x)
            return
        loss = paddle.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        plan.after_backward(model)
        opt.step()
        opt.clear_grad(set_to_zero=False)

    step()  # warm-up: kernels, accumulators
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    flops = plan.report(model, [3, args.size, args.size])["flops"]
    print(json.dumps({"variant": args.variant, "step_s": float(np.median(times)), "peak_rss_mb": peak_mb,
                      "trainable_tensors": len(params), "no_backward_share": flops["no_backward_share"]}))


def measure(model: str, variant: str, args) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    return run_json_child(__file__, ["--model", model, "--variant", variant, "--batch", str(args.batch),
                                     "--size", str(args.size), "--steps", str(args.steps)], env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["ResNet50", "ResNet18"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant (median reported)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_child(args)
    print(f"freeze stem..stage3; batch {args.batch}, {args.size} px, {args.threads} threads, "
          f"median of {args.steps} steps, Momentum + L2")
    header = f"{'model':<10} {'variant':<14} {'step s':>8} {'x full':>7} {'x fwd':>7} {'peak MB':>8} {'x full':>7} {'opt tensors':>11}"
    print(header)
    print("-" * len(header))
    for model in args.models:
        rows = {v: measure(model, v, args) for v in VARIANTS}
        full, fwd = rows["full"], rows["forward_only"]
        for v in VARIANTS:
            r = rows[v]
            print(f"{model:<10} {v:<14} {r['step_s']:>8.3f} {r['step_s'] / full['step_s']:>7.2f} "
                  f"{r['step_s'] / fwd['step_s']:>7.2f} {r['peak_rss_mb']:>8.0f} {r['peak_rss_mb'] / full['peak_rss_mb']:>7.2f} "
                  f"{r['trainable_tensors']:>11}")
        cut = rows["cut"]
        # rough model: backward costs about twice the forward of what still trains
        estimate = 1 + 2 * (1 - cut["no_backward_share"])
        verdict = "OK" if cut["step_s"] <= 0.5 * full["step_s"] and cut["step_s"] <= 1.3 * fwd["step_s"] else "MISSED"
        print(f"{model}: cut = {cut['step_s'] / full['step_s']:.2f}x full (target <= 0.5), "
              f"{cut['step_s'] / fwd['step_s']:.2f}x forward-only (target <= 1.3): {verdict}; "
              f"{cut['no_backward_share']:.1%} of forward MACs run no backward (FLOPs estimate "
              f"{estimate:.2f}x forward-only)")


if __name__ == "__main__":
    main()
