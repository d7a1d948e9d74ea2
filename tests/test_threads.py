"""CPU threads: decided before paddle is imported, and the math library really uses them.

The subprocess tests read ``omp_get_max_threads()`` of the OpenMP runtime that paddle's kernels
are bound to (looked up through libpaddle.so's handle, with code of their own), inside a
``tools/train.py`` run, and the count the training log states.
"""
import os
import re
import subprocess
import sys

import pytest

from ppfreeze.config.errors import ConfigError
from ppfreeze.runtime_env import available_cores, decide_threads, default_threads, local_process_count

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "tools", "train.py")

# Reads the count the way a user could check it, independently of ppfreeze.runtime_env.
PROBE = """
import ctypes
lib = [line.split()[-1] for line in open('/proc/self/maps') if line.rstrip().endswith('/libpaddle.so')][0]
print('OMP_MAX_THREADS', ctypes.CDLL(lib).omp_get_max_threads(), flush=True)
"""

RUN_TRAIN = """
import runpy, sys
sys.argv = [{train!r}] + {args!r}
try:
    runpy.run_path({train!r}, run_name='__main__')
except SystemExit as e:
    assert not e.code, e.code
""" + PROBE


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
           and not k.startswith("PADDLE_")}
    env.update(extra)
    return env


def _run(code, env):
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _probed(stdout):
    return int(re.search(r"OMP_MAX_THREADS (\d+)", stdout).group(1))


@pytest.fixture
def one_step_config(make_config):
    def _make(**glob):
        cfg, path = make_config(epochs=1, eval_during_train=False, max_train_steps=1, print_batch_step=1, **glob)
        return path
    return _make


@pytest.mark.parametrize("case", ["default", "num_threads_1", "user_omp"])
def test_train_tool_runs_with_the_decided_threads(case, one_step_config):
    cores = available_cores()
    if case == "default":
        path, env, expected = one_step_config(), _env(), cores
    elif case == "num_threads_1":
        path, env, expected = one_step_config(num_threads=1), _env(), 1
    else:   # a count the default would not give
        path, env, expected = one_step_config(), _env(OMP_NUM_THREADS=str(cores + 1)), cores + 1
    out = _run(RUN_TRAIN.format(train=TRAIN, args=["-c", path]), env)
    assert _probed(out) == expected
    logged = re.search(r"CPU threads in effect: (\d+) \(omp_get_max_threads\(\) of (\S+)\)", out)
    assert logged, out[-2000:]
    assert int(logged.group(1)) == expected


def test_threads_apply_when_paddle_was_imported_first():
    # library use: paddle pinned one thread before ppfreeze was asked (the default, then an explicit count)
    code = ("import os, paddle\n"
            "assert os.environ['OMP_NUM_THREADS'] == '1'\n"
            "from ppfreeze.engine.runtime import configure_threads\n"
            "configure_threads({'num_threads': None})\n" + PROBE +
            "configure_threads({'num_threads': 3})\n" + PROBE)
    assert [int(n) for n in re.findall(r"OMP_MAX_THREADS (\d+)", _run(code, _env()))] == [available_cores(), 3]


def test_launched_process_ignores_the_launchers_paddle_pin():
    # paddle.distributed.launch imports paddle, which writes OMP_NUM_THREADS=1 (tests/test_paddle_facts.py),
    # and the processes it starts inherit that
    child = ("from ppfreeze.runtime_env import decide_threads\n"
             "print('DECIDED', decide_threads().count, flush=True)\n")
    launcher = ("import os, subprocess, sys\n"
                "os.environ['OMP_NUM_THREADS'] = os.environ.get('OMP_NUM_THREADS', '1')   # as paddle's import\n"
                "env = dict(os.environ, PADDLE_LOCAL_SIZE='1', PADDLE_TRAINER_ID='0')\n"
                f"subprocess.run([sys.executable, '-c', {child!r}], env=env, check=True)\n")
    assert "DECIDED %d" % available_cores() in _run(launcher, _env())
    # ...but a 1 the user gave the launcher is theirs
    assert "DECIDED 1" in _run(launcher, _env(OMP_NUM_THREADS="1"))


def test_default_shares_cores_between_launched_processes():
    assert local_process_count({"PADDLE_LOCAL_SIZE": "4"}) == 4
    eps = "10.0.0.1:6170,10.0.0.1:6171,10.0.0.2:6170"
    assert local_process_count({"PADDLE_TRAINER_ENDPOINTS": eps, "PADDLE_CURRENT_ENDPOINT": "10.0.0.1:6171"}) == 2
    assert local_process_count({}) == 1
    assert default_threads({"PADDLE_LOCAL_SIZE": str(available_cores() * 2)}).count == 1
    assert default_threads({}).count == available_cores()


@pytest.mark.parametrize("bad", [0, -2, "2", True, 1.5])
def test_a_bad_thread_count_names_the_key(bad):
    with pytest.raises(ConfigError, match="Global.cpu_num_threads"):
        decide_threads(bad, "Global.cpu_num_threads")
