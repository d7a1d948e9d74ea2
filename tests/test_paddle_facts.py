"""Paddle 3.3 behaviours ppfreeze works around (docs/design.md lists each with its test).

If one of these starts failing after a Paddle upgrade, the workaround it justifies may be
obsolete (or need changing): read the matching entry in docs/design.md.
"""
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest


def test_tensor_clear_gradient_ignores_its_keyword():
    # why FreezePlan.after_backward calls clear_gradient(False) positionally
    p = paddle.create_parameter([2], "float32")
    (p * 2).sum().backward()
    p.clear_gradient(set_to_zero=False)
    assert p.grad is not None and np.array_equal(p.grad.numpy(), [0.0, 0.0])  # zeroed, not cleared
    (p * 2).sum().backward()
    p.clear_gradient(False)
    assert p.grad is None


def test_toggling_stop_gradient_breaks_a_multi_tensor_optimizer():
    # why the engine builds a new optimizer whenever the frozen set changes
    paddle.seed(0)
    net = paddle.nn.Sequential(paddle.nn.Linear(4, 4), paddle.nn.Linear(4, 2))
    opt = paddle.optimizer.Momentum(learning_rate=0.1, parameters=net.parameters(), use_multi_tensor=True)
    x = paddle.rand([3, 4])
    net(x).sum().backward()
    opt.step()
    opt.clear_grad()
    net[0].weight.stop_gradient = True
    net(x).sum().backward()
    with pytest.raises(Exception, match="grads.size"):
        opt.step()


def test_lr_zero_still_allocates_accumulators_but_stop_gradient_does_not():
    # why stop_gradient / cut are the methods that save optimizer memory
    paddle.seed(0)
    frozen_lr0 = paddle.nn.Linear(3, 3, weight_attr=paddle.ParamAttr(learning_rate=0.0))
    frozen_sg = paddle.nn.Linear(3, 3)
    for p in frozen_sg.parameters():
        p.stop_gradient = True
    params = frozen_lr0.parameters() + frozen_sg.parameters()
    opt = paddle.optimizer.Adam(parameters=params)
    (frozen_lr0(paddle.rand([2, 3])) + frozen_sg(paddle.rand([2, 3]))).sum().backward()
    opt.step()
    owners = {name for per_param in opt._accumulators.values() for name in per_param}
    assert frozen_lr0.weight.name in owners
    assert frozen_sg.weight.name not in owners


def test_bn_eval_is_undone_by_the_parents_train_but_use_global_stats_is_not():
    # why BN policies set use_global_stats instead of calling .eval() on BN layers
    net = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 1), paddle.nn.BatchNorm2D(4))
    net[1].eval()
    net.train()
    assert net[1].training
    net[1]._use_global_stats = True
    before = net[1]._mean.numpy().copy()
    net(paddle.rand([2, 3, 4, 4]) + 5)
    assert np.array_equal(before, net[1]._mean.numpy())


def test_importing_paddle_pins_omp_threads_to_one():
    # why threads are decided before paddle is imported (ppfreeze/runtime_env.py)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", "import os, paddle; print(os.environ.get('OMP_NUM_THREADS'))"],
                         env=env, capture_output=True, text=True, check=True).stdout.split()[-1]
    assert out == "1"


def test_dataloader_hangs_when_a_dataset_raises():
    # why ppfreeze.data.loader never lets a sample's exception escape (CheckedDataLoader)
    code = ("import paddle\n"
            "class Broken(paddle.io.Dataset):\n"
            "    def __len__(self): return 4\n"
            "    def __getitem__(self, i):\n"
            "        raise ValueError('bad image')\n"
            "print('iterating', flush=True)\n"
            "for batch in paddle.io.DataLoader(Broken(), batch_size=2, num_workers=0):\n"
            "    pass\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().strip() == "iterating"   # paddle imported, the loop starts
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=10)                                # ...and never ends
    finally:
        proc.kill()
        proc.wait()
