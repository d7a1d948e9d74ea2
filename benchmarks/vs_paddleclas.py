"""Training images/s of ppfreeze against PaddleClas, on PaddleClas's own config files, in one run.

Both train from the same PaddleClas YAML file (ResNet50 batch 16 and PPLCNet_x1_0 batch 32 by
default, 224 px, pretrained weights off) on the same synthetic JPEG files, each in its own
process, alternating, in two settings:

- defaults: each as a user runs it, with nothing set (PaddleClas: paddle's one thread;
  ppfreeze: its default, every available core);
- equal threads: ``OMP_NUM_THREADS`` set to the same count for both (default: available cores).

The config's own loader settings (``num_workers: 4``, shared memory) apply to both. Images/s are
over the iterations after ``--warmup``, timed inside each process at the end of every iteration
(PaddleClas: its ``batch_cost`` meter update; ppfreeze: the step-end callback). Needs a PaddleClas
checkout and a Python that can run it; without them the script says so and exits 0.

    python benchmarks/vs_paddleclas.py --paddleclas /path/to/PaddleClas --paddleclas-python /path/to/python
    python benchmarks/vs_paddleclas.py --paddleclas ../PaddleClas --configs ImageNet/PPLCNet/PPLCNet_x1_0.yaml:32
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

from _child import run_json_child  # noqa: E402  (benchmarks/ is the script's own folder)
from _train_bench import (StepClock, cores_text, env_without_threads, make_synthetic_images,  # noqa: E402
                          measure_rounds, median_ratio, print_json, run_ours)

DEFAULT_CONFIGS = ["ImageNet/ResNet/ResNet50.yaml:16", "ImageNet/PPLCNet/PPLCNet_x1_0.yaml:32"]
TARGET_DEFAULTS = 1.6   # on 2 cores: ours uses both, PaddleClas one


def overrides(args, list_path: str, batch: int, out_dir: str) -> list:
    """The -o overrides both frameworks get: CPU, one short epoch, synthetic data, no eval, no download."""
    size = args.size
    return ["Global.device=cpu", "Global.epochs=1", f"Global.iter_per_epoch={args.warmup + args.iters}",
            "Global.eval_during_train=False", f"Global.output_dir={out_dir}", "Arch.pretrained=False",
            f"Global.image_shape=[3, {size}, {size}]",
            f"DataLoader.Train.dataset.image_root={os.path.dirname(list_path)}",
            f"DataLoader.Train.dataset.cls_label_path={list_path}",
            f"DataLoader.Train.dataset.transform_ops.1.RandCropImage.size={size}",
            f"DataLoader.Train.sampler.batch_size={batch}"]


# ----------------------------------------------------------------------------- measured processes
def child_paddleclas(args) -> None:
    """PaddleClas's tools/train.py steps (get_config -> Engine -> train), its meters timed."""
    sys.path.insert(0, args.paddleclas)
    from ppcls.engine.engine import Engine
    from ppcls.utils import config as pc_config
    from ppcls.utils import misc

    clock = StepClock(args.batch, args.warmup, args.warmup + args.iters)
    update = misc.AverageMeter.update

    def timed_update(meter, val, n=1):
        if meter.name == "reader_cost":
            clock.add_reader(val)
        elif meter.name == "batch_cost":   # once per iteration, after its step and loss/metric updates
            clock.step_end()
        return update(meter, val, n)

    misc.AverageMeter.update = timed_update
    config = pc_config.get_config(args.config, overrides=args.o, show=False)
    config.profiler_options = None
    Engine(config, mode="train").train()
    print_json({**clock.summary(), "threads": _threads()})


def child_ours(args) -> None:
    clock = StepClock(args.batch, args.warmup, args.warmup + args.iters)
    run_ours(args.config, args.o, clock)
    print_json({**clock.summary(), "threads": _threads()})


def _threads():
    from ppfreeze.runtime_env import threads_in_effect
    read = threads_in_effect()
    return None if read is None else read[0]


# ----------------------------------------------------------------------------- the run
def find_paddleclas(args) -> str:
    """Why PaddleClas cannot run here ('' when it can)."""
    if not args.paddleclas or not os.path.isdir(os.path.join(args.paddleclas, "ppcls")):
        return f"no PaddleClas checkout at {args.paddleclas!r} (pass --paddleclas /path/to/PaddleClas)"
    probe = subprocess.run([args.paddleclas_python, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                            "import ppcls.engine.engine", args.paddleclas], env=_env(None), capture_output=True,
                           text=True)
    if probe.returncode:
        tail = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"{args.paddleclas_python} cannot import PaddleClas from {args.paddleclas}: {tail}"
    return ""


def _env(threads):
    env = env_without_threads()
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def measure(kind: str, config: str, batch: int, threads, args, list_path: str, work: str) -> dict:
    out = tempfile.mkdtemp(dir=work)
    child = [kind, "--config", config, "--batch", str(batch), "--warmup", str(args.warmup), "--iters",
             str(args.iters), "--paddleclas", args.paddleclas]
    child += [x for o in overrides(args, list_path, batch, out) for x in ("-o", o)]
    python = args.paddleclas_python if kind == "paddleclas" else sys.executable
    try:
        return run_json_child(__file__, child, env=_env(threads), python=python, cwd=ROOT if kind == "ours"
                              else args.paddleclas)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paddleclas", default=os.environ.get("PADDLECLAS_ROOT", ""),
                        help="PaddleClas checkout (default: $PADDLECLAS_ROOT)")
    parser.add_argument("--paddleclas-python", default=sys.executable,
                        help="a Python with PaddleClas's requirements (default: this one)")
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS,
                        help="config:batch, relative to ppcls/configs/")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=7, help="measured iterations per process")
    parser.add_argument("--rounds", type=int, default=1, help="PaddleClas/ppfreeze pairs per setting")
    parser.add_argument("--threads", type=int, default=None, help="the equal-threads setting (default: cores)")
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "ppfreeze_bench_images"))
    parser.add_argument("--child", choices=["paddleclas", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("-o", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_paddleclas(args) if args.child == "paddleclas" else child_ours(args)

    missing = find_paddleclas(args)
    if missing:
        print(f"SKIPPED: {missing}")
        return
    from ppfreeze.runtime_env import available_cores
    equal = args.threads or available_cores()
    jobs = []
    for item in args.configs:
        path, _, batch = item.rpartition(":")
        jobs.append((os.path.join(args.paddleclas, "ppcls", "configs", path), int(batch)))
    list_path = make_synthetic_images(args.data_dir, max(b for _, b in jobs) * (args.warmup + args.iters))
    work = tempfile.mkdtemp(prefix="vs_paddleclas_")
    print(f"training images/s, PaddleClas vs ppfreeze on PaddleClas's config files: {args.size} px, synthetic "
          f"500x375 JPEGs, {args.iters} iterations after {args.warmup} warm-up, {args.rounds} round(s) "
          f"alternating, {available_cores()} available cores; config loader settings (num_workers 4)")
    header = (f"{'model':<14} {'batch':>5} {'setting':<16} {'PaddleClas ips':>14} {'ours ips':>9} {'ratio':>6} "
              f"{'threads pc/ours':>15} {'reader pc/ours':>15} {'cores pc/ours':>13} {'load':>5}")
    print(header)
    print("-" * len(header), flush=True)
    summary = []
    try:
        for config, batch in jobs:
            model = os.path.splitext(os.path.basename(config))[0]
            ratios = {}
            for setting, threads in (("defaults", None), (f"{equal} threads each", equal)):
                pairs = []
                rounds = measure_rounds(args.rounds, ("paddleclas", "ours"),
                                        lambda kind: measure(kind, config, batch, threads, args, list_path, work))
                for got in rounds:
                    p, o = got["paddleclas"], got["ours"]
                    pairs.append((o["ips"], p["ips"]))
                    print(f"{model:<14} {batch:>5} {setting:<16} {p['ips']:>14.3f} {o['ips']:>9.3f} "
                          f"{o['ips'] / p['ips']:>6.2f} {str(p['threads']) + '/' + str(o['threads']):>15} "
                          f"{p['reader_share']:>7.1%}/{o['reader_share']:<7.1%} "
                          f"{cores_text(p):>6}/{cores_text(o):<6} {max(p['load_avg'], o['load_avg']):>5.1f}",
                          flush=True)
                ratios[setting] = median_ratio(pairs)
            summary.append((model, ratios))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for model, ratios in summary:
        parts = [f"{setting}: ours/PaddleClas = {ratio:.2f}" for setting, ratio in ratios.items()]
        verdict = "OK" if ratios["defaults"] >= TARGET_DEFAULTS else "MISSED"
        print(f"RESULT {model}: {'; '.join(parts)} (target at defaults >= {TARGET_DEFAULTS} on 2 cores: "
              f"{verdict}); load avg now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
