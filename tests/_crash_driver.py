"""Kill training with SIGKILL at chosen points, resume with ``Global.checkpoints=auto``, compare.

Run by ``tests/test_checkpoints.py`` as a subprocess::

    python tests/_crash_driver.py WORKDIR CONFIG.yaml PLAN.json RESULT.json

The parent imports paddle and ppfreeze once and runs no paddle op itself (a process that has
run paddle ops cannot fork safely); every training run is a forked child running
``tools/train.py``'s ``main``. Fault points are the file-system steps a run takes inside its
output directory (``os.replace``/``rename``/``symlink``/``remove``/``mkdir``/``fsync``,
``shutil.rmtree``) before and after each, the middle of every ``paddle.save`` (the file is
left half written), and before/after training steps. Events are numbered in the order an
uninterrupted run meets them (``PLAN: {"record": true}``); a trial kills the child at event
``i``, checks what is on disk, resumes in a second child and compares every checkpoint with
the uninterrupted run's, array by array.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, os.path.join(ROOT, "tools"), HERE]

import numpy as np  # noqa: E402
import paddle  # noqa: E402

import train  # noqa: E402  (tools/train.py)
from _tiny_model import TinyNet  # noqa: E402
from ppfreeze.arch import MODELS  # noqa: E402
from ppfreeze.arch.base import ArchModel  # noqa: E402
from ppfreeze.engine import checkpoint as ckpt  # noqa: E402
from ppfreeze.engine.checkpoint_store import CheckpointStore  # noqa: E402
from ppfreeze.engine.engine import Engine  # noqa: E402

ARCH = "CrashTinyNet"


@MODELS.register
class CrashTinyNet(TinyNet, ArchModel):
    """The tests' TinyNet under the model contract, so the engine can build it by name."""

    def __init__(self, class_num: int = 12):
        ArchModel.__init__(self)
        TinyNet.__init__(self, class_num)
        self.class_num, self.num_features = class_num, 16


class Faults:
    """Counts fault events inside ``scope`` and SIGKILLs the process at event ``kill_at``."""

    def __init__(self, scope: str, kill_at: int = -1):
        self.scope, self.kill_at, self.count, self.events = scope, kill_at, 0, []

    def event(self, kind: str, phase: str, path: str = "", half_write: bool = False) -> None:
        if path and not os.path.abspath(str(path)).startswith(self.scope):
            return
        self.events.append(f"{kind}:{phase}:{os.path.relpath(str(path), self.scope) if path else ''}")
        if self.count == self.kill_at:
            if half_write:  # die in the middle of writing this file
                with open(path, "r+b") as f:
                    f.truncate(os.path.getsize(path) // 2)
            os.kill(os.getpid(), signal.SIGKILL)
        self.count += 1

    def install(self) -> None:
        def wrap(owner, name, kind, path_of=lambda a: a[0]):
            real = getattr(owner, name)

            def wrapped(*args, **kwargs):
                path = path_of(args)
                self.event(kind, "before", path)
                out = real(*args, **kwargs)
                self.event(kind, "after", path)
                return out
            setattr(owner, name, wrapped)

        for name in ("replace", "rename"):
            wrap(os, name, name, lambda a: a[1])      # the destination
        for name in ("remove", "mkdir"):
            wrap(os, name, name)
        wrap(os, "symlink", "symlink", lambda a: a[1])
        wrap(shutil, "rmtree", "rmtree")
        real_fsync = os.fsync
        os.fsync = lambda fd: (self.event("fsync", "before", os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd))[1]
        real_save = paddle.save

        def save(obj, path, *args, **kwargs):
            self.event("paddle.save", "before", path)
            real_save(obj, path, *args, **kwargs)
            self.event("paddle.save", "mid", path, half_write=True)
        paddle.save = save
        real_step = Engine.train_step

        def train_step(engine, *args, **kwargs):
            self.event("train_step", f"before step {engine.global_step + 1}")
            return real_step(engine, *args, **kwargs)
        Engine.train_step = train_step


def event_kind(event: str) -> str:
    """An event with the run-specific parts (pids, digests, epochs, steps) taken out."""
    for pattern, replacement in ((r"\.staging-gen-[0-9a-f-]+", ".staging-gen-X"), (r"\.staging-[0-9a-f-]+", ".staging-X"),
                                 (r"e\d{4}-[0-9a-f]{32}", "SET"), (r"gen-\d+", "GEN"), (r"\.tmp-\d+", ".tmp-PID"),
                                 (r"\.(\w+\.\w+)\.\w+\.tmp", r".\1.TMP"), (r"before step \d+", "step"),
                                 (r"epoch_\d+", "epoch_N")):
        event = re.sub(pattern, replacement, event)
    return event


#: kinds of event the default sample kills at (the middle occurrence of each, i.e. a save with a
#: previous checkpoint to lose): inside every file write, every step of the commit, the clean-up
SAMPLE = ("paddle.save:mid:", "rename:", "replace:before:.checkpoints/current", "replace:after:.checkpoints/current",
          "symlink:after:.checkpoints/.current", "rmtree:", "train_step:", "fsync:before:.checkpoints/.staging-X/model.pdstates",
          "remove:before:.ppfreeze.lock", "replace:after:config.yaml", "replace:before:latest.pdparams")


def choose_points(events: list, how) -> list:
    """Event indices to kill at: a list as given, ``every`` event, one per kind (``kinds``) or ``sample``."""
    if isinstance(how, list):
        return how
    if how == "every":
        return list(range(len(events)))
    kinds = {}
    for index, event in enumerate(events):
        kinds.setdefault(event_kind(event), []).append(index)
    chosen = [indices[len(indices) // 2] for kind, indices in kinds.items()
              if how == "kinds" or kind.startswith(SAMPLE)]
    return sorted(chosen)


def run_child(argv, faults=None, record_to=None) -> int:
    """Run tools/train.py's main in a forked child; returns its wait status."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            if faults is not None:
                faults.install()
            code = train.main(argv)
            if record_to is not None:
                with open(record_to, "w") as f:
                    json.dump(faults.events, f)
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1]


def snapshot(out_dir: str):
    """Every checkpoint name -> its arrays and training state, read with the safe loader."""
    found = {}
    for name in CheckpointStore(out_dir).names():
        data = ckpt.load_checkpoint(os.path.join(out_dir, name))   # digests checked: complete, never a mix
        states = data["states"]
        arrays = {f"{part}/{k}": np.asarray(v) for part in ("model", "optimizer", "ema")
                  for k, v in (data.get(part) or {}).items() if isinstance(v, np.ndarray)}
        found[name] = (arrays, {k: states[k] for k in ("epoch", "global_step", "best_metric", "best_epoch",
                                                       "rng_state", "best_metric_ema")})
    return found


def differences(reference, got) -> list:
    problems = []
    if sorted(reference) != sorted(got):
        problems.append(f"names {sorted(got)} != {sorted(reference)}")
    for name in set(reference) & set(got):
        (ref_arrays, ref_states), (arrays, states) = reference[name], got[name]
        if ref_states != states:
            problems.append(f"{name}: states differ")
        if ref_arrays.keys() != arrays.keys():
            problems.append(f"{name}: tensors differ in names")
        problems += [f"{name}: {k} differs" for k in ref_arrays
                     if k in arrays and not np.array_equal(ref_arrays[k], arrays[k])]
    return problems


def leftovers(out_dir: str) -> list:
    """Anything an interrupted save left that the resumed run should have removed."""
    store = CheckpointStore(out_dir)
    keep = set(store.committed().values()) | {"current", os.readlink(os.path.join(store.root, "current"))}
    found = [e for e in os.listdir(store.root) if e not in keep]
    found += [e for e in os.listdir(out_dir) if e.endswith(".tmp") or e.startswith((".view", ".staging"))]
    found += [e for e in os.listdir(out_dir) if e == ".ppfreeze.lock"]
    return found


def main(workdir: str, config: str, plan_path: str, result_path: str) -> None:
    plan = json.load(open(plan_path))
    reference_dir = os.path.join(workdir, "reference")
    base = ["-c", config]
    events_file = os.path.join(workdir, "events.json")
    shutil.rmtree(reference_dir, ignore_errors=True)
    status = run_child(base + ["-o", f"Global.output_dir={reference_dir}"],
                       Faults(os.path.join(reference_dir, ARCH)), record_to=events_file)
    assert status == 0, f"the uninterrupted run failed: status {status}"
    events = json.load(open(events_file))
    if plan.get("record"):
        json.dump({"events": events}, open(result_path, "w"))
        return
    reference = snapshot(os.path.join(reference_dir, ARCH))
    results = []
    for index in choose_points(events, plan["points"]):
        trial_dir = os.path.join(workdir, f"trial_{index}")
        shutil.rmtree(trial_dir, ignore_errors=True)
        out = os.path.join(trial_dir, ARCH)
        argv = base + ["-o", f"Global.output_dir={trial_dir}"]
        killed = run_child(argv, Faults(out, kill_at=index))
        problems = [] if os.WIFSIGNALED(killed) and os.WTERMSIG(killed) == signal.SIGKILL else \
            [f"the run was not killed (status {killed})"]
        try:
            snapshot(out) if os.path.isdir(out) else None   # every committed name loads and verifies
        except Exception as e:  # noqa: BLE001  (report any failure as the trial's result)
            problems.append(f"after the kill: {type(e).__name__}: {e}")
        resumed = run_child(argv + ["-o", "Global.checkpoints=auto"])
        if resumed != 0:
            problems.append(f"the resumed run failed (status {resumed})")
        else:
            problems += differences(reference, snapshot(out))
            problems += [f"left behind: {e}" for e in leftovers(out)]
        results.append({"point": index, "event": events[index], "problems": problems})
        shutil.rmtree(trial_dir, ignore_errors=True)
    json.dump({"events": events, "results": results}, open(result_path, "w"), indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:5])
