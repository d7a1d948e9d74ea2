"""Weights and checkpoints are read without running code, on every path that reads them."""
import contextlib
import json
import os
import pickle
import shutil

import numpy as np
import paddle
import pytest

from ppfreeze.config import load_config
from ppfreeze.engine import Engine
from ppfreeze.engine import checkpoint as ckpt
from ppfreeze.errors import DataIntegrityError
from ppfreeze.utils.safe_load import load_file
from test_engine import load_tool


class Evil:
    """A pickle payload that runs a shell command when unpickled."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class EvalEvil:
    """The same through builtins.eval, which paddle.save itself uses for dense tensors."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({self.marker!r}, 'w').close()",))


def crafted(path, marker, payload="system", protocol=4):
    """Write a state dict whose value runs code on unpickling; returns the path."""
    value = {"system": lambda: Evil(f"touch {marker}"), "eval": lambda: EvalEvil(str(marker)),
             "object_array": lambda: np.array([Evil(f"touch {marker}")], dtype=object)}[payload]()
    with open(path, "wb") as f:
        pickle.dump({"fc.weight": value}, f, protocol=protocol)
    return str(path)


def assert_refused(error_text, path, marker):
    assert os.path.basename(str(path)) in error_text and "refused to load" in error_text, error_text
    assert not os.path.exists(marker), "the crafted file ran code"


# ----------------------------------------------------------------------------- the loader itself
def _lr_optimizer():
    model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.BatchNorm2D(4), paddle.nn.Flatten(),
                                 paddle.nn.Linear(4 * 6 * 6, 2))
    sched = paddle.optimizer.lr.CosineAnnealingDecay(0.1, 10)
    opt = paddle.optimizer.Momentum(parameters=model.parameters(), learning_rate=sched)
    model(paddle.rand([2, 3, 8, 8])).sum().backward()
    opt.step()
    sched.step()
    return model, opt, sched


def _same(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype and \
            a.shape == b.shape and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _genuine_objects():
    from paddle.base import core
    model, opt, sched = _lr_optimizer()
    dense = core.DenseTensor()
    dense.set(np.arange(6, dtype="float32").reshape(2, 3), paddle.CPUPlace())
    return {
        "state_dict": (model.state_dict(), 4),
        "state_dict_protocol2": (model.state_dict(), 2),
        "optimizer_with_lr": (opt.state_dict(), 4),
        "optimizer_protocol3": (opt.state_dict(), 3),
        "lr_scheduler": (sched.state_dict(), 4),
        "nested": ({"a": {"t": paddle.rand([2, 3])}, "list": [paddle.rand([3]), np.arange(4, dtype="int64"), 1.5, "x",
                                                               None, (1, 2), float("-inf")], "np16": np.ones(3, "float16")}, 4),
        "tensor": (paddle.rand([2, 2]), 4),
        "dense_tensor": ({"items": [dense, 3]}, 4),
        "bfloat16": ({"w": paddle.rand([2]).astype("bfloat16")}, 4),
        "checkpoint_states": ({"epoch": 3, "best_metric": float("-inf"), "metric_key": None,
                               "rng_state": ckpt.rng_state_data(), "file_digests": {".pdparams": "ab" * 32}}, 4),
    }


@pytest.mark.parametrize("name", list(_genuine_objects()))
def test_genuine_paddle_save_files_load_as_paddle_loads_them(tmp_path, name):
    obj, protocol = _genuine_objects()[name]
    path = str(tmp_path / name)
    paddle.save(obj, path, protocol=protocol)
    assert _same(paddle.load(path, return_numpy=True), load_file(path))


def test_split_big_tensors_and_safetensors_files_load(tmp_path):
    # protocol 2/3 files split tensors over 1 GiB into slices (too big to make here): the same layout, small
    whole = np.arange(12, dtype="float32").reshape(3, 4)
    split = {"w@@.0": whole.ravel()[:5], "w@@.1": whole.ravel()[5:], "b": np.ones(2, "float32"),
             "UnpackBigParamInfor@@": {"w": {"OriginShape": (3, 4), "slices": ["w@@.0", "w@@.1"]}},
             "StructuredToParameterName@@": {"w": "linear_0.w_0", "b": "linear_0.b_0"}}
    path = str(tmp_path / "split.pdparams")
    with open(path, "wb") as f:
        pickle.dump(split, f, protocol=2)
    expected = paddle.load(path, return_numpy=True)
    got = load_file(path)
    assert sorted(got) == ["b", "w"] and _same(expected, got) and np.array_equal(got["w"], whole)

    model = paddle.nn.Linear(3, 2)
    safe = str(tmp_path / "model.safetensors")
    paddle.save(model.state_dict(), safe, safetensors=True)
    got = load_file(safe)
    assert all(np.array_equal(got[k], v.numpy()) for k, v in model.state_dict().items())


@pytest.mark.parametrize("payload,protocol,names", [("system", 4, "'(posix|os|nt).system'"),
                                                    ("system", 2, "'(posix|os|nt).system'"),
                                                    ("eval", 4, r"builtins.eval\("),
                                                    ("object_array", 4, "numpy array of Python objects")])
def test_crafted_pickles_are_refused_before_anything_is_built(tmp_path, payload, protocol, names):
    marker = tmp_path / "pwned"
    path = crafted(tmp_path / "evil.pdparams", marker, payload, protocol)
    with pytest.raises(DataIntegrityError, match=f"evil.pdparams: refused to load this weights file: it asks "
                                                 f"for .*{names}") as err:
        load_file(path, "weights file")
    assert err.value.path == path and not marker.exists()
    with pytest.raises(Exception) if payload == "object_array" else _nothing():
        paddle.load(path)  # what paddle.load would have done (it fails later, after running the code)
    assert marker.exists()


@contextlib.contextmanager
def _nothing():
    yield


def test_truncated_empty_and_foreign_files_are_data_integrity_errors(tmp_path):
    path = str(tmp_path / "w.pdparams")
    paddle.save(paddle.nn.Linear(4, 4).state_dict(), path)
    data = open(path, "rb").read()
    for name, content, message in (("cut.pdparams", data[: len(data) // 2], "truncated or damaged"),
                                   ("empty.pdparams", b"", "empty"),
                                   ("text.pdparams", b"hello", "unknown format")):
        target = tmp_path / name
        target.write_bytes(content)
        with pytest.raises(DataIntegrityError, match=message):
            load_file(str(target))


# ----------------------------------------------------------------------------- every loading path
def test_pretrained_model_and_arch_pretrained_refuse_crafted_files(make_config, tmp_path):
    from ppfreeze.arch import build_model
    marker = tmp_path / "pwned"
    evil = crafted(tmp_path / "evil.pdparams", marker)
    cfg, path = make_config(epochs=1)
    with pytest.raises(DataIntegrityError) as err:
        Engine(load_config(path, [f"Global.pretrained_model={evil}"]), "train")
    assert_refused(str(err.value), evil, marker)
    with pytest.raises(DataIntegrityError) as err:
        build_model({"name": "ResNet18", "class_num": 12, "pretrained": evil})
    assert_refused(str(err.value), evil, marker)
    rec = {"name": "RecModel", "Backbone": {"name": "PPLCNet_x0_25", "pretrained": evil},
           "BackboneStopLayer": {"name": "flatten"}, "Neck": {"name": "FC", "embedding_size": 1280, "class_num": 8}}
    with pytest.raises(DataIntegrityError) as err:
        build_model(rec)
    assert_refused(str(err.value), evil, marker)


@pytest.mark.parametrize("tool,extra", [("eval", []), ("infer", []), ("export_model", []),
                                        ("export_weights", ["--layer", "fc", "--output", "OUT"])])
def test_tools_refuse_crafted_weights_with_exit_3(make_config, tmp_path, capsys, tool, extra):
    marker = tmp_path / "pwned"
    evil = crafted(tmp_path / "evil.pdparams", marker)
    cfg, path = make_config(epochs=1, save_inference_dir=str(tmp_path / "inference"))
    extra = [str(tmp_path / "fc.pdparams") if a == "OUT" else a for a in extra]
    assert load_tool(tool).main(["-c", path, "-o", f"Global.pretrained_model={evil}"] + extra) == 3
    err = capsys.readouterr().err
    assert "data integrity error" in err
    assert_refused(err, evil, marker)


def test_export_weights_refuses_a_crafted_sublayer_file(make_config, tmp_path, capsys):
    from ppfreeze.arch import build_model
    marker = tmp_path / "pwned"
    evil = crafted(tmp_path / "fc_evil.pdparams", marker)
    weights = str(tmp_path / "model.pdparams")
    paddle.save(build_model({"name": "ResNet18", "class_num": 12}).state_dict(), weights)
    cfg, path = make_config(epochs=1)
    assert load_tool("export_weights").main(["-c", path, "-o", f"Global.pretrained_model={weights}", "--layer", "fc",
                                             "--load", evil, "--output", str(tmp_path / "m.pdparams")]) == 3
    assert_refused(capsys.readouterr().err, evil, marker)


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory, demo_root):
    """A finished 2-epoch run (ResNet18, 32 px, 1 step per epoch) to craft resume inputs from."""
    import yaml
    from conftest import tiny_config
    tmp = tmp_path_factory.mktemp("resume_src")
    cfg = tiny_config(demo_root, str(tmp / "out"), "ResNet18", epochs=2)
    cfg["Global"].update(max_train_steps=1, eval_during_train=False)
    cfg["EMA"] = {"decay": 0.5}
    path = tmp / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    Engine(load_config(str(path), ["Global.epochs=1"]), "train").train()
    return str(path), os.path.join(str(tmp / "out"), "ResNet18")


def _legacy_copy(src_dir, dst_dir):
    """``epoch_1`` as the earlier layout wrote it: regular files next to each other."""
    os.makedirs(dst_dir, exist_ok=True)
    for suffix in ckpt.SUFFIXES:
        shutil.copyfile(os.path.join(src_dir, "epoch_1" + suffix), os.path.join(dst_dir, "epoch_1" + suffix))
    return os.path.join(dst_dir, "epoch_1")


@pytest.mark.parametrize("suffix", [".pdstates", ".pdparams", ".pdopt", ".pdema"])
def test_resume_refuses_a_crafted_file_even_with_matching_digests(one_epoch_run, tmp_path, suffix):
    """An attacker who also rewrites .pdstates' digests gets past the digest check, not the unpickler."""
    path, out = one_epoch_run
    marker = tmp_path / "pwned"
    prefix = _legacy_copy(out, str(tmp_path / "legacy"))
    crafted(prefix + suffix, marker)
    if suffix != ".pdstates":
        states = load_file(prefix + ".pdstates")
        states["file_digests"][suffix] = ckpt.file_sha256(prefix + suffix)
        paddle.save(states, prefix + ".pdstates")
    cfg = load_config(path, ["EMA.decay=0.5", f"Global.checkpoints={prefix}", f"Global.output_dir={tmp_path / 'o'}"])
    with pytest.raises(DataIntegrityError) as err:
        Engine(cfg, "train").train()
    assert_refused(str(err.value), prefix + suffix, marker)


def test_auto_resume_skips_a_crafted_checkpoint_with_a_warning(one_epoch_run, tmp_path, caplog):
    path, out = one_epoch_run
    marker = tmp_path / "pwned"
    run_dir = tmp_path / "o" / "ResNet18"
    prefix = _legacy_copy(out, str(run_dir))
    crafted(prefix + ".pdstates", marker)
    cfg = load_config(path, ["Global.checkpoints=auto", f"Global.output_dir={tmp_path / 'o'}", "Global.epochs=1"])
    Engine(cfg, "train").train()
    assert "skipping checkpoint" in caplog.text and "refused to load" in caplog.text
    assert "no complete checkpoint" in caplog.text and not marker.exists()


def test_checkpoints_of_the_earlier_layout_resume_bit_identically(one_epoch_run, tmp_path):
    """Regular files with Paddle's GeneratorState pickled in .pdstates (as ppfreeze wrote them before)."""
    path, out = one_epoch_run
    prefix = _legacy_copy(out, str(tmp_path / "legacy"))
    states = load_file(prefix + ".pdstates")
    states["rng_state"] = [_generator_state(values) for values in states["rng_state"]]
    paddle.save(states, prefix + ".pdstates")
    assert "GeneratorState" in open(prefix + ".pdstates", "rb").read().decode("latin1")
    straight = Engine(load_config(path, ["EMA.decay=0.5", f"Global.output_dir={tmp_path / 's'}"]), "train")
    straight.train()
    resumed = Engine(load_config(path, ["EMA.decay=0.5", f"Global.checkpoints={prefix}",
                                        f"Global.output_dir={tmp_path / 'r'}"]), "train")
    resumed.train()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def _generator_state(values):
    from paddle.base.core import GeneratorState
    state = GeneratorState.__new__(GeneratorState)
    state.__setstate__(tuple(values))
    return state


def test_a_truncated_pdstates_is_a_data_integrity_error(one_epoch_run, tmp_path, capsys):
    path, out = one_epoch_run
    prefix = _legacy_copy(out, str(tmp_path / "legacy"))
    data = open(prefix + ".pdstates", "rb").read()
    open(prefix + ".pdstates", "wb").write(data[: len(data) // 3])
    code = load_tool("train").main(["-c", path, "-o", f"Global.checkpoints={prefix}",
                                    "-o", f"Global.output_dir={tmp_path / 'o'}"])
    err = capsys.readouterr().err
    assert code == 3 and "epoch_1.pdstates: checkpoint file is truncated or damaged" in err, err
    assert "Traceback" not in err


def test_safe_loader_is_the_only_loader():
    """No module reads weights with paddle.load (or pickle) except through ppfreeze.utils.safe_load."""
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    offenders = []
    for folder in ("ppfreeze", "tools", "deploy"):
        for directory, _, files in os.walk(os.path.join(root, folder)):
            for name in files:
                if not name.endswith(".py") or name == "safe_load.py":
                    continue
                text = open(os.path.join(directory, name), encoding="utf-8").read()
                if "paddle.load(" in text or "pickle.load(" in text or "pickle.loads(" in text \
                        or "Unpickler(" in text:
                    offenders.append(os.path.relpath(os.path.join(directory, name), root))
    assert offenders == [], json.dumps(offenders)
