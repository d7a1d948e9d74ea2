"""How many cores a command keeps busy: CPU seconds of its process tree per wall second.

Samples ``/proc/<pid>/stat`` (user + system time of every thread) of the command and all its
descendants (data loader workers included) every ``--interval`` seconds and prints the busy
cores per interval, then the median over the samples and the run's average. Linux only. Other
jobs on the machine take cores away: the load average is printed with each sample.

    python benchmarks/cpu_busy.py -- python tools/train.py -c configs/quick_start/ResNet18_freeze.yaml
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _train_bench import tree_cpu_seconds  # noqa: E402  (benchmarks/ is the script's own folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between samples")
    parser.add_argument("--skip", type=float, default=15.0, help="seconds of start-up left out of the median")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    start = time.time()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    seen = {}          # pid -> last CPU seconds (so exited workers still count up to their last sample)
    samples, last_total, last_time = [], 0.0, start
    print(f"{'t s':>6} {'cores busy':>10} {'load':>5}", flush=True)
    while proc.poll() is None:
        time.sleep(args.interval)
        seen.update(tree_cpu_seconds(proc.pid))
        now, total = time.time(), sum(seen.values())
        busy = (total - last_total) / (now - last_time)
        last_total, last_time = total, now
        if now - start > args.skip:
            samples.append(busy)
        print(f"{now - start:>6.0f} {busy:>10.2f} {os.getloadavg()[0]:>5.1f}", flush=True)
    wall = time.time() - start
    median = statistics.median(samples) if samples else float("nan")
    print(f"RESULT cores busy: median {median:.2f} over {len(samples)} samples after {args.skip:.0f} s, "
          f"run average {last_total / wall:.2f} ({last_total:.0f} CPU s in {wall:.0f} s wall); exit {proc.returncode}; "
          f"{os.cpu_count()} cores; load avg now {os.getloadavg()[0]:.1f}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
