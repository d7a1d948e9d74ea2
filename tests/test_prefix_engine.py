"""Freeze.prefix_engine: the frozen, cut prefix on a static program or a paddle.inference predictor."""
import gc
import json
import logging
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest
import yaml

from _tiny_model import tiny_model, tiny_vit
from ppfreeze.arch import build_model
from ppfreeze.config import load_config
from ppfreeze.engine import Engine
from ppfreeze.freeze import build_freeze_plan
from ppfreeze.freeze.prefix_engine import TOLERANCE, PrefixEngine
from ppfreeze.freeze.replay import relative_difference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# model, the frozen prefix (cut), input size
MODELS = {
    "TinyNet": (tiny_model, {"until": "stage1"}, 16),
    "TinyViT": (tiny_vit, {"until": "stage1"}, 16),   # code between units: patch flattening, class token
    "ResNet18": (lambda: build_model({"name": "ResNet18", "class_num": 10}), {"until": "stage3"}, 64),
    "PPLCNet_x0_25": (lambda: build_model({"name": "PPLCNet_x0_25", "class_num": 10}), {"until": "blocks5"}, 64),
}


def _setup(name, engine, batch=4, size=None):
    make, freeze, default_size = MODELS[name]
    paddle.seed(0)
    model = make()
    plan = build_freeze_plan({**freeze, "allow_random_frozen": True, "prefix_engine": engine}, model)
    plan.apply(model, 1)
    model.train()
    size = size or default_size
    x = paddle.to_tensor(np.random.RandomState(0).rand(batch, 3, size, size).astype("float32"))
    return model, plan, x


def _same_draws(fn):
    """Run ``fn`` with the RNG state it found, then put that state back (dropout in the heads)."""
    state = paddle.get_rng_state()
    out = fn()
    paddle.set_rng_state(state)
    return out


@pytest.mark.parametrize("engine", ["static", "inference"])
@pytest.mark.parametrize("name", list(MODELS))
def test_engine_output_matches_dygraph(name, engine):
    model, plan, x = _setup(name, engine)
    prefix = PrefixEngine.for_state(model, plan)
    run = lambda: model(x)  # noqa: E731
    assert prefix.prepare(run, x)
    assert prefix.used == engine, prefix.decision
    assert prefix.decision["candidates"][engine]["difference"] <= TOLERANCE
    reference = _same_draws(run).numpy()
    out = _same_draws(lambda: prefix.run(run, x))
    assert out.stop_gradient is False or not plan.optimizer_parameters(model)  # the rest still trains
    # the rest may amplify the prefix's 1e-6 differences (BN with batch statistics on 4 images)
    assert relative_difference(out, reference) <= 1e-3, relative_difference(out, reference)
    # another batch size of the same image size reuses the program
    small = x[:3]
    assert relative_difference(_same_draws(lambda: prefix.run(lambda: model(small), small)),
                               _same_draws(lambda: model(small))) <= 1e-3
    assert len(prefix.programs) == 1


def test_the_prefix_really_runs_on_the_predictor():
    model, plan, x = _setup("ResNet18", "inference")
    prefix = PrefixEngine.for_state(model, plan)
    run = lambda: model(x)  # noqa: E731
    prefix.prepare(run, x)
    reference = _same_draws(run).numpy()
    # the predictor holds its own copy of the prefix weights: spoiling dygraph's changes nothing
    stem = model.stem[0].conv.weight
    stem.set_value(paddle.zeros_like(stem))
    assert relative_difference(_same_draws(lambda: prefix.run(run, x)), reference) <= TOLERANCE
    assert relative_difference(_same_draws(run), reference) > 0.1


def test_an_engine_that_disagrees_falls_back_to_dygraph(monkeypatch, caplog):
    build = PrefixEngine._build

    def skewed(self, name, key, x):  # injected mismatch: 1 % off
        program = build(self, name, key, x)
        return lambda inputs: [o * 1.01 for o in program(inputs)]
    monkeypatch.setattr(PrefixEngine, "_build", skewed)
    model, plan, x = _setup("TinyNet", "inference")
    prefix = PrefixEngine.for_state(model, plan)
    run = lambda: model(x)  # noqa: E731
    prefix.prepare(run, x)
    assert prefix.used == "dygraph" and not prefix.programs
    assert "prefix_engine inference: falls back to dygraph" in caplog.text
    assert "its output differs from dygraph's by 1.0e-02" in caplog.text
    assert np.array_equal(_same_draws(lambda: prefix.run(run, x)).numpy(), _same_draws(run).numpy())


def test_auto_keeps_the_fastest_engine_that_matches(monkeypatch, caplog):
    build = PrefixEngine._build

    def spoil_static(self, name, key, x):
        program = build(self, name, key, x)
        return (lambda inputs: [o + 1.0 for o in program(inputs)]) if name == "static" else program
    monkeypatch.setattr(PrefixEngine, "_build", spoil_static)
    caplog.set_level(logging.INFO, logger="ppfreeze")
    model, plan, x = _setup("ResNet18", "auto")
    prefix = PrefixEngine.for_state(model, plan)
    prefix.prepare(lambda: model(x), x)
    candidates = prefix.decision["candidates"]
    assert "error" in candidates["static"] and "difference" in candidates["inference"]
    timed = {n: c["seconds"] for n, c in candidates.items() if "seconds" in c}
    assert set(timed) == {"inference", "dygraph"} and prefix.used == min(timed, key=timed.get)
    assert "ruled out: static its output differs" in caplog.text


def test_a_prefix_with_batch_statistics_stays_in_dygraph(caplog):
    caplog.set_level(logging.INFO, logger="ppfreeze")
    paddle.seed(0)
    model = tiny_model()
    plan = build_freeze_plan({"until": "stage1", "bn": "freeze_affine", "allow_random_frozen": True,
                              "prefix_engine": "inference"}, model)
    plan.apply(model, 1)
    assert PrefixEngine.for_state(model, plan) is None
    assert "runs in dygraph: BN in the frozen prefix (stem) normalises with batch statistics" in caplog.text


@pytest.mark.parametrize("name", ["ResNet18", "TinyViT"])
def test_the_trainable_rest_gets_the_gradients_of_a_dygraph_prefix(name):
    grads = {}
    for engine in ("dygraph", "inference"):
        model, plan, x = _setup(name, engine)
        prefix = PrefixEngine.for_state(model, plan)
        run = lambda: model(x)  # noqa: E731
        if prefix is not None:
            prefix.prepare(run, x)
            assert prefix.used == "inference"
        out = _same_draws(lambda: prefix.run(run, x) if prefix is not None else run())
        out.square().mean().backward()
        grads[engine] = {n: p.grad.numpy() for n, p in plan.optimizer_parameters(model) if p.grad is not None}
    assert grads["dygraph"] and set(grads["dygraph"]) == set(grads["inference"])
    for n, g in grads["dygraph"].items():
        assert relative_difference(grads["inference"][n], g) <= 1e-3, n


def _training_peak_mb(engine, steps=2):
    """Paddle's peak host allocation during training steps after the first (the engine is built in it)."""
    from paddle.base import core
    model, plan, x = _setup("TinyNet", engine, batch=4, size=192)
    opt = paddle.optimizer.Momentum(learning_rate=0.01, parameters=[p for _, p in plan.optimizer_parameters(model)])
    prefix = PrefixEngine.for_state(model, plan)
    run = lambda: model(x)  # noqa: E731

    def step():
        if prefix is not None:
            prefix.prepare(run, x)
        out = prefix.run(run, x) if prefix is not None else run()
        out.mean().backward()
        opt.step()
        opt.clear_grad()
    step()
    core.host_memory_stat_reset_peak_value("Allocated", 0)
    for _ in range(steps):
        step()
    return core.host_memory_stat_peak_value("Allocated", 0) / 2 ** 20


def test_training_peak_memory_is_not_higher_than_dygraph_cut():
    dygraph = _training_peak_mb("dygraph")
    gc.collect()
    inference = _training_peak_mb("inference")
    # the prefix's dygraph activations are gone; the predictor holds its weights (tiny here) and workspace
    assert inference <= dygraph, (inference, dygraph)


# -- through the engine: schedule, resume, report, feature cache ------------------------------------
FREEZE = ["Freeze.until=stage3", "Freeze.allow_random_frozen=true", "Freeze.prefix_engine=inference",
          "Freeze.schedule=[{epoch: 2, unfreeze: [stage3]}]"]


@pytest.fixture(scope="module")
def engine_run(tmp_path_factory, demo_root):
    from conftest import tiny_config
    tmp = tmp_path_factory.mktemp("prefix_run")
    cfg = tiny_config(demo_root, str(tmp / "out"), "ResNet18", epochs=2)
    cfg["Global"].update(max_train_steps=2, eval_during_train=False)
    path = tmp / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    engine = Engine(load_config(str(path), FREEZE), "train")
    engine.train()
    return str(path), os.path.join(str(tmp / "out"), "ResNet18"), engine


def test_a_milestone_that_moves_the_cut_rebuilds_the_engine(engine_run):
    _, out, engine = engine_run
    log = open(os.path.join(out, "train.log")).read()
    # epoch 1: stem..stage3 (blocks.5) cut; epoch 2: stage3 trains, the cut moves to blocks.3
    assert "prefix_engine inference: the frozen prefix through 'blocks.5' runs on inference" in log
    assert "prefix_engine inference: the frozen prefix through 'blocks.3' runs on inference" in log
    prefix = engine.freezer.prefix_engine
    assert prefix.boundary == "blocks.3" and prefix.used == "inference"
    report = json.load(open(os.path.join(out, "freeze_report.json")))
    assert report["prefix_engine"]["used"] == "inference" and report["prefix_engine"]["boundary"] == "blocks.3"
    assert report["prefix_engine"]["candidates"]["inference"]["difference"] <= TOLERANCE


def test_resume_rebuilds_the_engine_from_the_checkpoint(engine_run, tmp_path):
    path, out, _ = engine_run
    resumed = Engine(load_config(path, FREEZE + [f"Global.checkpoints={os.path.join(out, 'epoch_1')}",
                                                 f"Global.output_dir={tmp_path}"]), "train")
    resumed.train()
    assert resumed.freezer.prefix_engine.used == "inference"
    straight = paddle.load(os.path.join(out, "epoch_2.pdparams"))
    again = paddle.load(os.path.join(str(tmp_path), "ResNet18", "epoch_2.pdparams"))
    for k in straight:  # close, not necessarily bit-identical: the prefix runs on another engine
        np.testing.assert_allclose(np.array(again[k]), np.array(straight[k]), rtol=1e-4, atol=1e-6, err_msg=k)


def test_the_feature_cache_records_the_engine_output(make_config, tmp_path):
    cfg, path = make_config(epochs=3, eval_during_train=False)
    ops = cfg["DataLoader"]["Eval"]["dataset"]["transform_ops"]
    engine = Engine(load_config(path, ["DataLoader.Train.dataset.transform_ops=" + json.dumps(ops),
                                       "Freeze.until=stage2", "Freeze.allow_random_frozen=true",
                                       "Freeze.prefix_engine=inference"]), "train")
    engine.train()
    cache, prefix = engine.freezer.feature_cache, engine.freezer.prefix_engine
    assert prefix.used == "inference"
    assert cache.verified and cache.enabled and cache.replays == 2 * engine.iters_per_epoch
    # what the cache holds is the predictor's output for those images
    images, _, indices = next(iter(engine.train_loader))
    program = prefix.programs[tuple(images.shape[1:])]
    stored = np.stack([cache.store[int(i)] for i in np.asarray(indices).reshape(-1)])
    assert np.array_equal(stored, program(images)[0].numpy())


# tools/train.py, with each rank printing what its prefix engine chose
RANK_CHOICES = """
import sys
sys.path.insert(0, {root!r}); sys.path.insert(0, {tools!r})
import paddle
from ppfreeze.freeze.prefix_engine import PrefixEngine
decide = PrefixEngine._decide
def logged(self, run, x, key):
    decide(self, run, x, key)
    print("PREFIX", paddle.distributed.get_rank(), self.boundary, self.used, flush=True)
PrefixEngine._decide = logged
import train
sys.exit(train.main(sys.argv[1:]))
"""


def test_data_parallel_ranks_build_their_own_engine_and_agree(demo_root, tmp_path):
    from conftest import tiny_config
    cfg = tiny_config(demo_root, str(tmp_path / "out"), "ResNet18", epochs=2)
    cfg["Global"].update(max_train_steps=2, eval_during_train=False)
    cfg["Freeze"] = {"until": "stage3", "allow_random_frozen": True, "prefix_engine": "auto",
                     "schedule": [{"epoch": 2, "unfreeze": ["stage3"]}]}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    script = tmp_path / "train_printing_choices.py"
    script.write_text(RANK_CHOICES.format(root=ROOT, tools=os.path.join(ROOT, "tools")))
    proc = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
                           "--log_dir", str(tmp_path / "log"), str(script), "-c", str(path)],
                          cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=400)
    logs = [(tmp_path / "log" / f"workerlog.{r}").read_text() for r in (0, 1)]
    assert proc.returncode == 0, proc.stdout[-3000:] + logs[0][-3000:]
    choices = [[line.split()[2:] for line in log.splitlines() if line.startswith("PREFIX")] for log in logs]
    # both ranks decided at both freeze states (the milestone moves the cut) and chose the same engine
    assert [c[0] for c in choices[0]] == ["blocks.5", "blocks.3"] and choices[0] == choices[1], choices
    assert "frozen tensors unchanged" in logs[0]


# -- Paddle facts the engine relies on (docs/design.md) ---------------------------------------------
def _predictor_for(layer, shape, tmp_path, **options):
    from paddle import inference
    from ppfreeze.export.exporter import save_program
    from ppfreeze.export.predictor_config import inference_config
    layer.eval()
    save_program(layer, shape, str(tmp_path))
    config = inference_config(str(tmp_path / "inference.json"), str(tmp_path / "inference.pdiparams"), **options)
    return inference.create_predictor(config)


def _ops(program_json: str):
    import re
    return set(re.findall(r'"#":"(\w+\.\w+)"', program_json))


def test_fact_the_cpu_predictor_folds_batch_norm_into_the_convolution(tmp_path):
    """Why the prefix engine does not fold BN itself: paddle.inference's passes already do."""
    predictor = _predictor_for(tiny_model(), [3, 16, 16], tmp_path, optim_cache_dir=str(tmp_path / "optimised"))
    predictor.run([paddle.rand([2, 3, 16, 16])])
    saved, optimised = (_ops(open(p).read()) for p in (tmp_path / "inference.json",
                                                       tmp_path / "optimised" / "_optimized.json"))
    assert "1.batch_norm_" in saved and "1.conv2d" in saved
    assert not any("batch_norm" in op for op in optimised) and "onednn_op.fused_conv2d" in optimised


def test_fact_predictor_outputs_are_overwritten_by_the_next_run(tmp_path):
    """Why the prefix engine copies the predictor's output before the step uses it."""
    predictor = _predictor_for(paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.ReLU()), [3, 16, 16],
                               tmp_path)
    first = predictor.run([paddle.rand([2, 3, 16, 16])])[0]
    kept = first.numpy().copy()
    predictor.run([paddle.rand([2, 3, 16, 16])])
    assert not np.array_equal(first.numpy(), kept)


def test_the_shared_replay_lets_the_feature_cache_skip_a_vit_prefix():
    """Code between the units (patch flattening, class token) gets stand-ins of the observed shapes."""
    from ppfreeze.freeze.cache import FeatureCache
    model, plan, x = _setup("TinyViT", "dygraph")
    cache = FeatureCache(model, plan)
    indices = paddle.to_tensor(np.arange(4))
    run = lambda: model(x)  # noqa: E731
    first = cache.forward(run, indices).numpy()              # records, learns the structure
    assert "patch_embed" in cache.replay.glue_after and "blocks.0" not in cache.replay.glue_after
    assert np.array_equal(cache.forward(run, indices).numpy(), first) and cache.verified
    assert np.array_equal(cache.forward(run, indices).numpy(), first) and cache.replays == 2


def test_fact_onednn_passes_corrupt_a_value_read_twice_unless_cse_is_off(tmp_path):
    """Why ppfreeze/export/predictor_config.py deletes common_subexpression_elimination_pass with oneDNN."""
    from paddle import inference
    from ppfreeze.arch.backbone.convnext import ChannelsFirstLayerNorm
    layer = ChannelsFirstLayerNorm(8)
    fixed = _predictor_for(layer, [8, 8, 8], tmp_path)
    x = paddle.to_tensor(np.random.RandomState(0).rand(2, 8, 8, 8).astype("float32"))
    reference = layer(x)
    config = inference.Config(str(tmp_path / "inference.json"), str(tmp_path / "inference.pdiparams"))
    config.disable_gpu()
    config.enable_mkldnn()
    config.disable_glog_info()
    assert relative_difference(inference.create_predictor(config).run([x])[0], reference) > 0.5
    assert relative_difference(fixed.run([x])[0], reference) <= 1e-5
