"""What a frozen teacher and parameter-efficient fine-tuning cost: step time, peak memory, trainable parameters.

Part 1, distillation (teacher + student, GT cross entropy + KD loss at T=4), one training step of:

    frozen        ppfreeze: freeze_params_list [true, false] -> a Freeze rule: the teacher is cut
                  (forward only, no graph) and its BN statistics stay fixed
    paddleclas    what PaddleClas does: teacher parameters ``trainable = False`` (stop_gradient),
                  nothing else: no graph either, but its BN statistics keep moving in train mode
    unstepped     the teacher left trainable but outside the optimizer: its whole backward runs
                  and its gradients are thrown away
    student_only  the student alone with cross entropy (the floor: no teacher at all)

Part 2, fine-tuning a pretrained-size model: full fine-tuning, linear probe (everything but the
head frozen), LoRA (rank 8 on the trunk's convolutions / a ViT's qkv) and BitFit.

Each variant runs in its own process (its peak RSS is its own), all in one run; read the ratios.

    python benchmarks/peft_distill.py                                   # the defaults below, 224 px
    python benchmarks/peft_distill.py --batch 4 --steps 2 --rounds 1    # a short look
    python benchmarks/peft_distill.py --peft-models ResNet50 ViT_small_patch16_224   # once ViT is in
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

DISTILL_VARIANTS = ["frozen", "paddleclas", "unstepped", "student_only"]
PEFT_VARIANTS = ["full", "linear_probe", "lora", "bitfit"]
CLASSES = 100


def _distill_setup(args, variant):
    from ppfreeze.arch import build_model
    from ppfreeze.freeze import build_freeze_plan
    from ppfreeze.loss import build_loss
    if variant == "student_only":
        model = build_model({"name": args.student, "class_num": CLASSES})
        loss = build_loss([{"CELoss": {"weight": 1.0}}], "Loss.Train")
        plan = build_freeze_plan(None, model)
        return model, plan, loss, [p for _, p in plan.optimizer_parameters(model)]
    model = build_model({"name": "DistillationModel", "freeze_params_list": [variant == "frozen", False],
                         "models": [{"Teacher": {"name": args.teacher, "class_num": CLASSES}},
                                    {"Student": {"name": args.student, "class_num": CLASSES}}]})
    if variant == "paddleclas":
        for p in model.Teacher.parameters():  # PaddleClas's freeze_params_list
            p.trainable = False
    plan = build_freeze_plan({"allow_random_frozen": True}, model)
    loss = build_loss([{"DistillationGTCELoss": {"weight": 1.0, "model_names": ["Student"]}},
                       {"DistillationKLDivLoss": {"weight": 1.0, "model_name_pairs": [["Student", "Teacher"]],
                                                  "temperature": 4}}], "Loss.Train")
    params = [p for n, p in plan.optimizer_parameters(model) if variant != "unstepped" or n.startswith("Student.")]
    return model, plan, loss, params


def _peft_setup(args, variant):
    from ppfreeze.arch import build_model
    from ppfreeze.freeze import build_freeze_plan
    from ppfreeze.loss import build_loss
    model = build_model({"name": args.model, "class_num": CLASSES})
    trunk = [s for s in model.stages if s not in ("stem", "head")]
    lora_select = ["blocks.*.attn.qkv"] if hasattr(model, "cls_token") else trunk
    freeze = {"full": None,
              "linear_probe": {"until": trunk[-1]},
              "lora": {"peft": {"method": "lora", "select": lora_select, "rank": 8, "alpha": 16}},
              "bitfit": {"peft": "bitfit"}}[variant]
    plan = build_freeze_plan(dict(freeze, allow_random_frozen=True) if freeze else None, model)
    return model, plan, build_loss([{"CELoss": {"weight": 1.0}}], "Loss.Train"), None


def run_child(args) -> None:
    """Measure one variant in this process and print one JSON line."""
    import numpy as np
    import paddle
    paddle.seed(0)
    setup = _distill_setup if args.part == "distill" else _peft_setup
    model, plan, loss_fn, params = setup(args, args.variant)
    plan.apply(model, 1)
    if params is None:
        params = [p for _, p in plan.optimizer_parameters(model)]
    opt = paddle.optimizer.Momentum(learning_rate=0.01, momentum=0.9, parameters=params,
                                    weight_decay=paddle.regularizer.L2Decay(1e-4))
    x = paddle.to_tensor(np.random.RandomState(0).rand(args.batch, 3, args.size, args.size).astype("float32"))
    y = paddle.to_tensor(np.random.RandomState(1).randint(0, CLASSES, (args.batch, 1)).astype("int64"))
    model.train()

    def step():
        loss_fn(model(x), y)["loss"].backward()
        plan.after_backward(model)
        opt.step()
        opt.clear_grad(set_to_zero=False)
        model.clear_gradients(set_to_zero=False)  # 'unstepped': the teacher's gradients are discarded

    step()  # warm-up: kernels, accumulators
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    report = plan.report(model, [3, args.size, args.size])
    trainable = sum(int(np.prod(p.shape)) for p in params)
    print(json.dumps({"variant": args.variant, "step_s": float(np.median(times)),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                      "trainable": trainable, "total": report["params"]["total"],
                      "added": (report.get("peft") or {}).get("params_added", 0),
                      "no_backward_share": report["flops"]["no_backward_share"]}))


def measure(part: str, variant: str, args, model: str = "") -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    return run_json_child(__file__, ["--part", part, "--variant", variant, "--model", model, "--teacher", args.teacher,
                                     "--student", args.student, "--batch", str(args.batch), "--size", str(args.size),
                                     "--steps", str(args.steps)], env=env)


def measure_all(part: str, variants, args, model: str = "") -> dict:
    """Every variant once per round, round-robin (drift on a shared machine hits all alike); the
    median step time and the largest peak RSS over the rounds."""
    runs = {v: [] for v in variants}
    for _ in range(args.rounds):
        for v in variants:
            runs[v].append(measure(part, v, args, model))
    out = {}
    for v, rs in runs.items():
        step = sorted(r["step_s"] for r in rs)[len(rs) // 2]
        out[v] = dict(rs[0], step_s=step, peak_rss_mb=max(r["peak_rss_mb"] for r in rs))
    return out


def _row(name: str, r: dict, ref: dict) -> str:
    return (f"{name:<26} {r['step_s']:>8.3f} {r['step_s'] / ref['step_s']:>7.2f} {r['peak_rss_mb']:>8.0f} "
            f"{r['peak_rss_mb'] / ref['peak_rss_mb']:>7.2f} {r['trainable']:>12,} {r['trainable'] / r['total']:>8.2%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="ResNet34")
    parser.add_argument("--student", default="ResNet18")
    parser.add_argument("--peft-models", nargs="+", default=["ResNet50"],
                        help="models for part 2 (e.g. ViT_small_patch16_224 once it is registered)")
    parser.add_argument("--parts", nargs="+", default=["distill", "peft"], choices=["distill", "peft"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant (median reported)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=3, help="round-robin repetitions of every variant (median)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--part", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_child(args)
    header = f"{'variant':<26} {'step s':>8} {'x ref':>7} {'peak MB':>8} {'x ref':>7} {'trainable':>12} {'share':>8}"
    print(f"batch {args.batch}, {args.size} px, {args.threads} threads, median of {args.steps} steps x "
          f"{args.rounds} rounds, Momentum + L2, {CLASSES} classes")
    if "distill" in args.parts:
        print(f"\n1. distillation: teacher {args.teacher}, student {args.student}; GT CE + KD (T=4); ref = frozen")
        print(header + "\n" + "-" * len(header))
        rows = measure_all("distill", DISTILL_VARIANTS, args)
        for v in DISTILL_VARIANTS:
            print(_row(v, rows[v], rows["frozen"]))
        print(f"frozen teacher: {rows['frozen']['no_backward_share']:.1%} of forward MACs run no backward; "
              f"'unstepped' costs {rows['unstepped']['step_s'] / rows['frozen']['step_s']:.2f}x the step time and "
              f"{rows['unstepped']['peak_rss_mb'] / rows['frozen']['peak_rss_mb']:.2f}x the peak memory")
    if "peft" in args.parts:
        from ppfreeze.arch import MODELS
        for model in args.peft_models:
            if model not in MODELS:
                print(f"\n2. {model}: not registered in this checkout, skipped")
                continue
            print(f"\n2. fine-tuning {model}; ref = full fine-tuning")
            print(header + "\n" + "-" * len(header))
            rows = measure_all("peft", PEFT_VARIANTS, args, model)
            for v in PEFT_VARIANTS:
                print(_row(v, rows[v], rows["full"]) + (f"  (+{rows[v]['added']:,} added)" if rows[v]["added"] else ""))


if __name__ == "__main__":
    main()
