"""Shared parts of the training-throughput benchmarks (``train_ips.py``, ``vs_paddleclas.py``).

- a synthetic ImageNet-style image folder (JPEG files + ``train_list.txt``), so every
  contender decodes and augments the same files;
- :class:`StepClock`: per-step end times and reader waits, recorded inside the measured process,
  plus the CPU time of its process tree (workers included) over the measured steps;
- :func:`run_ours`: ppfreeze's ``tools/train.py`` path (its parser, ``run_tool`` and ``train``),
  with the clock hooked onto the loop's step-end callback.

Nothing here imports paddle at module level: the measured processes decide threads first.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, TypeVar

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

# The ImageNet training pipeline of PaddleClas's configs (224 px).
TRAIN_OPS = [{"DecodeImage": {"to_rgb": True, "channel_first": False}},
             {"RandCropImage": {"size": 224}},
             {"RandFlipImage": {"flip_code": 1}},
             {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.485, 0.456, 0.406],
                                 "std": [0.229, 0.224, 0.225], "order": ""}}]


def make_synthetic_images(root: str, count: int, width: int = 500, height: int = 375, classes: int = 1000,
                          seed: int = 0) -> str:
    """Write ``count`` JPEGs (photo-like: smooth colour fields plus grain, quality 90, 500x375 by
    default, the most common ImageNet size) and ``train_list.txt``; returns the list path.
    Reuses the folder when it already holds the same set."""
    import cv2
    import numpy as np
    list_path = os.path.join(root, "train_list.txt")
    stamp = f"{count} {width} {height} {classes} {seed}"
    stamp_path = os.path.join(root, "stamp.txt")
    if os.path.exists(stamp_path) and open(stamp_path).read() == stamp:
        return list_path
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    rng = np.random.RandomState(seed)
    lines = []
    for i in range(count):
        coarse = rng.randint(0, 256, (height // 25 + 1, width // 25 + 1, 3)).astype(np.uint8)
        img = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
        img = np.clip(img.astype(np.int16) + rng.randint(-12, 13, img.shape), 0, 255).astype(np.uint8)
        name = f"images/{i:05d}.jpg"
        cv2.imwrite(os.path.join(root, name), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        lines.append(f"{name} {rng.randint(classes)}\n")
    with open(list_path, "w") as f:
        f.writelines(lines)
    with open(stamp_path, "w") as f:
        f.write(stamp)
    return list_path


def _tree_pids(root_pid: int) -> List[int]:
    """``root_pid`` and its descendants (Linux /proc)."""
    children: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    pids, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, []))
    return pids


def tree_cpu_seconds(root_pid: Optional[int] = None) -> Dict[int, float]:
    """CPU seconds (user + system, all threads) per live process of the tree under ``root_pid``."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in _tree_pids(root_pid or os.getpid()):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return out


class StepClock:
    """Step end times and reader waits of one training run, recorded in the measured process.

    Steps ``warmup`` .. end are measured: images/s over them, the reader's share of their wall
    time, and the CPU cores the process tree kept busy (CPU seconds / wall seconds; workers that
    exited before the end are not counted).
    """

    def __init__(self, batch_size: int, warmup: int, total: int, on_measure: Optional[Callable[[bool], None]] = None):
        self.batch_size = batch_size
        self.warmup = warmup
        self.total = total
        self.on_measure = on_measure   # called with True when the measured steps start, False when they end
        self.ends: List[float] = []
        self.reader: List[float] = []
        self._cpu_start: Optional[Dict[int, float]] = None
        self._cpu_end: Optional[Dict[int, float]] = None

    def add_reader(self, seconds: float) -> None:
        self.reader.append(seconds)

    def step_end(self) -> None:
        self.ends.append(time.perf_counter())
        if len(self.ends) == self.total:
            self._cpu_end = tree_cpu_seconds()
            if self.on_measure:
                self.on_measure(False)
        if len(self.ends) == self.warmup:
            self._cpu_start = tree_cpu_seconds()
            if self.on_measure:
                self.on_measure(True)

    def summary(self) -> Dict[str, Any]:
        steps = len(self.ends) - self.warmup
        if steps < 1 or self.warmup < 1:
            raise RuntimeError(f"{len(self.ends)} steps ran with warmup={self.warmup}: need warmup >= 1 and more steps")
        wall = self.ends[-1] - self.ends[self.warmup - 1]
        step_times = [b - a for a, b in zip(self.ends[self.warmup - 1:], self.ends[self.warmup:])]
        reader = sum(self.reader[self.warmup:len(self.ends)])
        cpu = None
        if self._cpu_start is not None and self._cpu_end is not None:
            cpu = sum(self._cpu_end[p] - self._cpu_start.get(p, 0.0) for p in self._cpu_end) / wall
        return {"ips": self.batch_size * steps / wall, "steps": steps, "wall_s": wall,
                "step_s_median": statistics.median(step_times), "reader_share": reader / wall,
                "cores_busy": cpu, "cpu_s_per_image": None if cpu is None else cpu * wall / (self.batch_size * steps),
                "load_avg": os.getloadavg()[0]}


def run_ours(config_path: str, overrides: Sequence[str], clock: StepClock) -> None:
    """Train with ppfreeze's ``tools/train.py`` path, the clock hooked onto the loop.

    The hooks are installed inside the tool's job, after ``run_tool`` decided the threads and
    before the Engine is built, so the process starts exactly as ``python tools/train.py`` does.
    """
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    sys.path.insert(0, ROOT)
    import train as train_tool  # tools/train.py
    from ppfreeze.cli import run_tool

    def job(config, args):
        from ppfreeze.engine import callbacks, meters
        _wrap(callbacks.CallbackList, "on_step_end", lambda *a: clock.step_end())
        _wrap(meters.StepMeter, "add_reader_time", lambda self, seconds: clock.add_reader(seconds))
        train_tool.train(config, args)

    parser = train_tool.build_parser("benchmark")
    parser.add_argument("--freeze-report", action="store_true")
    argv = ["-c", config_path] + [x for o in overrides for x in ("-o", o)]
    code = run_tool(parser, job, argv)
    if code:
        raise SystemExit(code)


def _wrap(cls: type, name: str, before: Callable[..., None]) -> None:
    original = getattr(cls, name)

    def wrapped(*args, **kwargs):
        before(*args, **kwargs)
        return original(*args, **kwargs)
    setattr(cls, name, wrapped)


def print_json(result: Dict[str, Any]) -> None:
    """The measured process's one result line (read by ``_child.run_json_child``)."""
    print(json.dumps(result), flush=True)


T = TypeVar("T")


def rotated(items: Sequence[T], round_index: int) -> List[T]:
    """``items`` in the order round ``round_index`` runs them: rotated by one each round, so none always
    runs first on a machine that warms up or gets busier."""
    k = round_index % len(items)
    return list(items[k:]) + list(items[:k])


def measure_rounds(rounds: int, kinds: Sequence[str], measure: Callable[[str], dict]) -> Iterator[Dict[str, dict]]:
    """Per round, ``{kind: measure(kind)}`` with every kind measured back to back in :func:`rotated` order."""
    for r in range(rounds):
        yield {kind: measure(kind) for kind in rotated(kinds, r)}


def env_without_threads() -> Dict[str, str]:
    """This process's environment without OMP_NUM_THREADS / MKL_NUM_THREADS (a child then sets its own,
    or gets the default a user would)."""
    return {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def cores_text(result: dict) -> str:
    """A measured process's busy cores for a table cell ("?" where it could not be measured)."""
    return "?" if result.get("cores_busy") is None else f"{result['cores_busy']:.2f}"


def median_ratio(pairs: Sequence[tuple]) -> float:
    """Median of per-round ratios a/b: each round ran both back to back, so each ratio saw the same load."""
    return statistics.median(a / b for a, b in pairs)
