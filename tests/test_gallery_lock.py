"""Gallery writers take turns (``ppfreeze/retrieval/lock.py``): concurrent appends keep every item."""
import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from ppfreeze.retrieval import GalleryIndex, IndexBusyError, IndexMismatchError, index_lock
from ppfreeze.retrieval.lock import lock_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIM = 8


def _vectors(n, seed):
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def _base_index(index_dir, n=20, method="Flat"):
    index = GalleryIndex.create(DIM, method, "IP")
    index.add(_vectors(n, 0), [f"base_{i}" for i in range(n)])
    index.save(index_dir)


def _count(index_dir):
    with open(os.path.join(index_dir, "manifest.json")) as f:
        return json.load(f)["count"]


# A writer process: load -> add 120 -> save, with a pause between load and save so that two
# writers would overlap; `started` is created once the index is loaded.
WRITER = textwrap.dedent("""
    import sys, time, numpy as np
    sys.path.insert(0, {root!r})
    from ppfreeze.retrieval import GalleryIndex, index_lock
    index_dir, name, started, use_lock = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
    def change():
        index = GalleryIndex.load(index_dir)
        open(started, "w").close()
        time.sleep(1.0)
        feats = np.random.default_rng(len(name)).normal(size=(120, {dim})).astype(np.float32)
        index.add(feats, [f"{{name}}_{{i}}" for i in range(120)])
        index.save(index_dir)
    if use_lock:
        with index_lock(index_dir, timeout=60):
            change()
    else:
        change()
""").format(root=ROOT, dim=DIM)


def _start_writer(tmp_path, index_dir, name, use_lock):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    started = str(tmp_path / f"{name}.started")
    proc = subprocess.Popen([sys.executable, str(script), index_dir, name, started, "1" if use_lock else "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, started


def _wait_for(path, proc, seconds=60):
    deadline = time.time() + seconds
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() < deadline, "writer did not start"
        time.sleep(0.02)


@pytest.mark.parametrize("method", ["Flat", "HNSW32"])
def test_two_concurrent_appends_keep_every_item(tmp_path, method):
    index_dir = str(tmp_path / "index")
    _base_index(index_dir, method=method)
    first, first_started = _start_writer(tmp_path, index_dir, "first", use_lock=True)
    _wait_for(first_started, first)       # the first writer has loaded and holds the lock
    second, second_started = _start_writer(tmp_path, index_dir, "second", use_lock=True)
    for proc in (first, second):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert _count(index_dir) == 20 + 120 + 120      # before: 140, the first writer's items lost
    labels = set(GalleryIndex.load(index_dir).id_to_label().values())
    assert {"first_0", "first_119", "second_0", "second_119", "base_0"} <= labels


def test_a_writer_without_the_lock_gets_an_error_instead_of_losing_an_update(tmp_path):
    index_dir = str(tmp_path / "index")
    _base_index(index_dir)
    first, first_started = _start_writer(tmp_path, index_dir, "first", use_lock=False)
    _wait_for(first_started, first)
    stale = GalleryIndex.load(index_dir)  # loaded while the first writer is at work
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    stale.add(_vectors(5, 9), [f"late_{i}" for i in range(5)])
    with pytest.raises(IndexMismatchError, match="another writer saved this index after it was loaded"):
        stale.save(index_dir)
    assert _count(index_dir) == 140                 # the first writer's items are still there
    fresh = GalleryIndex.load(index_dir)            # the fix the message gives: load again, redo
    fresh.add(_vectors(5, 9), [f"late_{i}" for i in range(5)])
    fresh.save(index_dir)
    fresh.add(_vectors(1, 10), ["again"])           # saving twice from one loaded index is fine
    fresh.save(index_dir)
    assert _count(index_dir) == 146


def test_a_held_lock_is_waited_for_then_refused_with_the_holder_named(tmp_path):
    index_dir = str(tmp_path / "index")
    _base_index(index_dir)
    held, release = threading.Event(), threading.Event()

    def holder():
        with index_lock(index_dir):
            held.set()
            release.wait(30)
    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(30)
    try:
        tic = time.time()
        with pytest.raises(IndexBusyError) as e:
            with index_lock(index_dir, timeout=0.3):
                pass
        assert 0.3 <= time.time() - tic < 5
        assert f"process {os.getpid()}" in str(e.value) and lock_path(index_dir) in str(e.value)
        index = GalleryIndex.load(index_dir)
        index.add(_vectors(1, 3), ["x"])
        with pytest.raises(IndexBusyError):         # save takes the lock itself
            index.save(index_dir, lock_timeout=0)
    finally:
        release.set()
        thread.join()
    with index_lock(index_dir, timeout=0):          # free again; re-entrant in one thread
        with index_lock(index_dir, timeout=0):
            index.save(index_dir)
    assert _count(index_dir) == 21


def test_a_killed_writer_leaves_no_stale_lock(tmp_path):
    index_dir = str(tmp_path / "index")
    _base_index(index_dir)
    code = f"import sys, os, time; sys.path.insert(0, {ROOT!r}); from ppfreeze.retrieval import index_lock\n" \
           f"with index_lock({index_dir!r}):\n    open({str(tmp_path / 'locked')!r}, 'w').close(); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        _wait_for(str(tmp_path / "locked"), proc)
        with pytest.raises(IndexBusyError):
            with index_lock(index_dir, timeout=0):
                pass
    finally:
        proc.kill()
        proc.wait()
    with index_lock(index_dir, timeout=5):
        pass
