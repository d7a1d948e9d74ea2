"""What freezing costs and saves: step time and peak memory per freezing method and prefix engine.

Freezes every trunk stage but the last (ResNet50: stem..stage3; PPLCNet: conv1..blocks5) with
each method, and ``cut`` with each ``Freeze.prefix_engine`` (dygraph, static, inference), and
measures a training step side by side with full fine-tuning and with a dygraph forward-only pass,
in one run (each variant in its own process so peak RSS is its own; "alloc MB" is paddle's peak host
allocation, free of the C allocator's caching). With ``--rounds N`` the
variants run N times, alternating (the order rotates each round), and the medians are reported:
on a shared machine read the ratios, not the seconds. Ends with one line per model:

    RESULT <model> cut_engine_vs_forward_only=<x> cut_engine_vs_full=<y>

(``cut_engine`` is ``cut`` with the prefix on the inference engine).

    python benchmarks/freeze_cost.py                       # ResNet50 and PPLCNet_x1_0, batch 16, 224 px
    python benchmarks/freeze_cost.py --models ResNet50 --batch 8 --size 96 --steps 3 --threads 2 --rounds 2
    python benchmarks/freeze_cost.py --variants full cut cut_inference forward_only
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from typing import Dict, List

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from _child import run_json_child  # noqa: E402  (benchmarks/ is the script's own folder)

METHODS = ["lr_zero", "clear_grad", "stop_gradient", "cut"]
ENGINES = {"cut_static": "static", "cut_inference": "inference"}   # cut with Freeze.prefix_engine
VARIANTS = ["full", *METHODS, *ENGINES, "forward_only"]
ENGINE_VARIANT = "cut_inference"
TARGETS = {"forward_only": 0.8, "full": 0.3}   # cut_inference step <= this x the variant's step


def freeze_config(model, variant: str) -> dict:
    """Every trunk stage but the last frozen, with the variant's method (and prefix engine)."""
    if variant in ("full", "forward_only"):
        return {}
    trunk = [s for s in model.stages if s not in ("stem", "head")]
    cfg = {"stages": len(trunk) - 1, "allow_random_frozen": True, "method": "cut" if variant in ENGINES else variant}
    if variant in ENGINES:
        cfg["prefix_engine"] = ENGINES[variant]
    return cfg


def run_child(args) -> None:
    """Measure one variant in this process and print one JSON line."""
    import numpy as np
    import paddle
    from ppfreeze.arch import build_model
    from ppfreeze.freeze import build_freeze_plan
    from ppfreeze.freeze.prefix_engine import PrefixEngine

    paddle.seed(0)
    model = build_model({"name": args.model, "class_num": 100})
    plan = build_freeze_plan(freeze_config(model, args.variant) or None, model)
    plan.apply(model, 1)
    params = [p for _, p in plan.optimizer_parameters(model)]
    opt = paddle.optimizer.Momentum(learning_rate=0.01, momentum=0.9, parameters=params,
                                    weight_decay=paddle.regularizer.L2Decay(1e-4))
    x = paddle.to_tensor(np.random.RandomState(0).rand(args.batch, 3, args.size, args.size).astype("float32"))
    y = paddle.to_tensor(np.random.RandomState(1).randint(0, 100, (args.batch,)).astype("int64"))
    model.train()
    engine = PrefixEngine.for_state(model, plan) if args.variant in ENGINES else None

    def forward():
        if engine is None:
            return model(x)
        engine.prepare(lambda: model(x), x)   # first step only: build and check the engine
        return engine.run(lambda: model(x), x)

    def step():
        if args.variant == "forward_only":
            with paddle.no_grad():
                model(x)
            return
        loss = paddle.nn.functional.cross_entropy(forward(), y)
        loss.backward()
        plan.after_backward(model)
        opt.step()
        opt.clear_grad(set_to_zero=False)

    tic = time.perf_counter()
    step()  # warm-up: kernels, accumulators, the prefix engine's build and check
    first_s = time.perf_counter() - tic
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    from paddle.base import core  # paddle's own host allocations: free of the C allocator's caching
    alloc_mb = core.host_memory_stat_peak_value("Allocated", 0) / 2 ** 20
    flops = plan.report(model, [3, args.size, args.size])["flops"]
    print(json.dumps({"variant": args.variant, "step_s": float(np.median(times)), "first_step_s": first_s,
                      "peak_rss_mb": peak_mb, "peak_alloc_mb": alloc_mb, "trainable_tensors": len(params),
                      "no_backward_share": flops["no_backward_share"],
                      "engine": engine.used if engine is not None else None}))


def measure(model: str, variant: str, args) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    return run_json_child(__file__, ["--model", model, "--variant", variant, "--batch", str(args.batch),
                                     "--size", str(args.size), "--steps", str(args.steps)], env=env)


def measure_rounds(model: str, variants: List[str], args) -> Dict[str, dict]:
    """Every variant ``args.rounds`` times, alternating; medians of step time and peak RSS per variant."""
    import statistics
    runs: Dict[str, List[dict]] = {v: [] for v in variants}
    for r in range(args.rounds):
        shift = r % len(variants)
        for v in variants[shift:] + variants[:shift]:
            runs[v].append(measure(model, v, args))
    rows = {}
    for v, results in runs.items():
        rows[v] = dict(results[-1], step_s=statistics.median(x["step_s"] for x in results),
                       peak_rss_mb=statistics.median(x["peak_rss_mb"] for x in results),
                       peak_alloc_mb=statistics.median(x["peak_alloc_mb"] for x in results),
                       step_runs=[round(x["step_s"], 3) for x in results])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["ResNet50", "PPLCNet_x1_0"])
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant (median reported)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of every variant, alternating (median reported)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_child(args)
    variants = [v for v in VARIANTS if v in args.variants]
    for needed in ("full", "forward_only"):
        if needed not in variants:
            variants.append(needed)
    print(f"freeze every trunk stage but the last; batch {args.batch}, {args.size} px, {args.threads} threads, "
          f"median of {args.steps} steps, {args.rounds} round(s), Momentum + L2")
    header = (f"{'model':<13} {'variant':<14} {'step s':>8} {'x full':>7} {'x fwd':>7} {'peak MB':>8} {'x full':>7} "
              f"{'alloc MB':>8} {'opt tensors':>11}  engine")
    print(header)
    print("-" * len(header))
    results = []
    for model in args.models:
        rows = measure_rounds(model, variants, args)
        full, fwd = rows["full"], rows["forward_only"]
        for v in variants:
            r = rows[v]
            print(f"{model:<13} {v:<14} {r['step_s']:>8.3f} {r['step_s'] / full['step_s']:>7.2f} "
                  f"{r['step_s'] / fwd['step_s']:>7.2f} {r['peak_rss_mb']:>8.0f} "
                  f"{r['peak_rss_mb'] / full['peak_rss_mb']:>7.2f} {r['peak_alloc_mb']:>8.0f} "
                  f"{r['trainable_tensors']:>11}  "
                  f"{r['engine'] or ''}" + (f"  runs {r['step_runs']}" if args.rounds > 1 else ""))
        if "cut" in rows:
            cut = rows["cut"]
            estimate = 1 + 2 * (1 - cut["no_backward_share"])  # backward ~ twice the forward of what trains
            print(f"{model}: cut = {cut['step_s'] / full['step_s']:.2f}x full, {cut['step_s'] / fwd['step_s']:.2f}x "
                  f"forward-only; {cut['no_backward_share']:.1%} of forward MACs run no backward (FLOPs estimate "
                  f"{estimate:.2f}x forward-only with a dygraph prefix)")
        if ENGINE_VARIANT in rows:
            eng = rows[ENGINE_VARIANT]
            ratios = {k: eng["step_s"] / rows[k]["step_s"] for k in TARGETS}
            verdict = "OK" if all(ratios[k] <= t for k, t in TARGETS.items()) else "MISSED"
            print(f"{model}: {ENGINE_VARIANT} (prefix on {eng['engine']}) = {ratios['forward_only']:.2f}x forward-only "
                  f"(target <= {TARGETS['forward_only']}), {ratios['full']:.2f}x full (target <= {TARGETS['full']}): "
                  f"{verdict}; first step (build + check) {eng['first_step_s']:.1f} s")
            results.append(f"RESULT {model} cut_engine_vs_forward_only={ratios['forward_only']:.3f} "
                           f"cut_engine_vs_full={ratios['full']:.3f}")
    for line in results:
        print(line)


if __name__ == "__main__":
    main()
