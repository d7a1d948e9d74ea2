"""Bad image files never hang a run: they stop it naming the file and list line, or are skipped.

Damaged JPEGs (truncated, corrupted bytes) count as bad images even though libjpeg decodes them
with only a warning. Covers the loader with num_workers 0 and 2, the tools (train with
in-training eval, eval.py) in subprocesses, and DecodeImage's strict checks.
"""
import os
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import yaml

from ppfreeze.config.errors import ConfigError
from ppfreeze.data.failures import BadImageError
from ppfreeze.data.preprocess import DecodeImage
from ppfreeze.data.preprocess.jpeg_integrity import decode_with_libjpeg_warnings, jpeg_structure_problem

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPS = [{"DecodeImage": {"to_rgb": True}}, {"ResizeImage": {"size": 16}},
       {"NormalizeImage": {"scale": "1.0/255.0", "order": ""}}]


def _jpeg(seed=0, size=48, **params) -> bytes:
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (size, size), interpolation=cv2.INTER_LINEAR)
    flags = [x for kv in ((getattr(cv2, k), v) for k, v in params.items()) for x in kv]
    return cv2.imencode(".jpg", img, flags)[1].tobytes()


def _libjpeg_warns_about(data: bytes) -> bool:
    return decode_with_libjpeg_warnings(lambda: cv2.imdecode(np.frombuffer(data, np.uint8), 1))[1] is not None


def _corrupted_middle(jpg: bytes) -> bytes:
    """Bytes overwritten inside the image data: no marker damaged, but libjpeg warns while decoding."""
    for offset in range(len(jpg) // 2, len(jpg) - 40, 7):
        data = bytearray(jpg)
        data[offset:offset + 16] = b"\x7f" * 16
        if jpeg_structure_problem(bytes(data)) is None and _libjpeg_warns_about(bytes(data)):
            return bytes(data)
    raise AssertionError("no corruption of the middle bytes made libjpeg warn")


# ----------------------------------------------------------------------------- DecodeImage
BAD_BYTES = {
    "empty": lambda jpg: b"",
    "not an image": lambda jpg: b"definitely not an image",
    "truncated at 2/3": lambda jpg: jpg[:len(jpg) * 2 // 3],
    "truncated in the header": lambda jpg: jpg[:40],
    "only the SOI marker": lambda jpg: jpg[:2],
    "EOI cut off": lambda jpg: jpg[:-2],
    "stray marker in the data": lambda jpg: jpg[:len(jpg) // 2] + b"\xff\x55" + jpg[len(jpg) // 2 + 2:],
    "corrupted middle bytes": _corrupted_middle,
}


# Pillow keeps libjpeg's warnings to itself: only the cv2 backend sees damage inside the Huffman data.
@pytest.mark.parametrize("damage,backend", [(d, b) for d in BAD_BYTES for b in ("cv2", "pil")
                                            if (d, b) != ("corrupted middle bytes", "pil")])
def test_damaged_images_are_refused(damage, backend):
    data = BAD_BYTES[damage](_jpeg())
    with pytest.raises(ValueError) as e:
        DecodeImage(backend=backend)(data)
    assert str(e.value)


def test_libjpeg_damage_warning_is_the_reason_and_strict_false_decodes_anyway(capfd):
    data = _corrupted_middle(_jpeg())
    with pytest.raises(ValueError, match="libjpeg reports 'Corrupt JPEG data"):
        DecodeImage()(data)
    assert "Corrupt JPEG data" not in capfd.readouterr().err        # the strict decode kept stderr clean
    assert DecodeImage(strict=False)(data).shape == (48, 48, 3)   # PaddleClas's behaviour, on request
    assert "Corrupt JPEG data" in capfd.readouterr().err            # with libjpeg's warning only


@pytest.mark.parametrize("params", [{}, {"IMWRITE_JPEG_PROGRESSIVE": 1}, {"IMWRITE_JPEG_RST_INTERVAL": 1},
                                    {"IMWRITE_JPEG_QUALITY": 100}, {"IMWRITE_JPEG_OPTIMIZE": 1},
                                    {"IMWRITE_JPEG_SAMPLING_FACTOR": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444}])
def test_valid_jpegs_pass_the_strict_checks(params):
    data = _jpeg(seed=3, size=40, **params)
    assert jpeg_structure_problem(data) is None
    expected = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    np.testing.assert_array_equal(DecodeImage()(data), expected)
    np.testing.assert_array_equal(DecodeImage()(data + b"camera trailer after EOI"), expected)
    grey = cv2.imencode(".jpg", cv2.cvtColor(expected, cv2.COLOR_RGB2GRAY))[1].tobytes()
    assert DecodeImage()(grey).shape == (40, 40, 3)


def test_every_demo_image_passes_the_strict_checks(demo_root):
    paths = [os.path.join(d, f) for d, _, fs in os.walk(demo_root) for f in fs if f.endswith(".jpg")]
    assert len(paths) > 50
    for path in paths:
        with open(path, "rb") as f:
            assert jpeg_structure_problem(f.read()) is None, path
        DecodeImage()(open(path, "rb").read())


def test_other_text_on_stderr_during_a_strict_decode_is_passed_on(capfd):
    data = _jpeg()
    image, warning = decode_with_libjpeg_warnings(
        lambda: (os.write(2, b"another thread's log line\n"), cv2.imdecode(np.frombuffer(data, np.uint8), 1))[1])
    assert warning is None and image is not None
    assert "another thread's log line" in capfd.readouterr().err


# ----------------------------------------------------------------------------- the loader
@pytest.fixture
def listed(tmp_path):
    """8 tiny JPEGs in 2 classes; ``make(bad={index: bytes})`` writes the list with some files damaged."""
    os.makedirs(tmp_path / "img", exist_ok=True)
    good = [_jpeg(seed=i, size=24) for i in range(8)]

    def make(bad=None, name="list.txt"):
        lines = []
        for i, data in enumerate(good):
            data = (bad or {}).get(i, data)
            (tmp_path / "img" / f"{name}_{i}.jpg").write_bytes(data)
            lines.append(f"img/{name}_{i}.jpg {i % 2}")
        (tmp_path / name).write_text("\n".join(lines) + "\n")
        return str(tmp_path / name)
    return tmp_path, good, make


def _loader(root, list_path, workers=0, skip=None, batch_size=4, mode="Train"):
    from ppfreeze.data.loader import build_dataloader
    dataset = {"name": "ImageNetDataset", "image_root": str(root), "cls_label_path": list_path, "transform_ops": OPS}
    if skip is not None:
        dataset["skip_bad_images"] = skip
    section = {"dataset": dataset, "sampler": {"name": "BatchSampler", "batch_size": batch_size, "shuffle": False},
               "loader": {"num_workers": workers, "use_shared_memory": False}}
    return build_dataloader({mode: section}, mode, seed=0)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_bad_image_stops_the_loader_promptly_naming_file_and_line(listed, workers):
    root, good, make = listed
    list_path = make(bad={5: good[5][: len(good[5]) // 2]})
    loader = _loader(root, list_path, workers)
    tic = time.time()
    seen = []
    with pytest.raises(BadImageError) as e:
        for batch in loader:
            seen.append(batch[0].shape[0])
    assert time.time() - tic < 30   # before: waited forever
    assert seen == [4]              # the first batch was fine
    message = str(e.value)
    assert str(root / "img" / "list.txt_5.jpg") in message and f"{list_path}:6" in message
    assert "truncated" in message and "DataLoader.Train.dataset.skip_bad_images: true" in message
    assert isinstance(e.value, ValueError)
    # the loader is usable again (no dead thread or worker left behind)
    with pytest.raises(BadImageError):
        list(loader)


@pytest.mark.parametrize("workers", [0, 2])
def test_skip_bad_images_drops_them_from_their_batch_and_counts_them(listed, workers, caplog):
    root, good, make = listed
    list_path = make(bad={1: b"", 6: good[6][:30], 7: b"GIF89a not really"})
    loader = _loader(root, list_path, workers, skip=True)
    for _ in range(2):  # two passes: each is counted, each file is named once
        batches = list(loader)
        assert [b[0].shape[0] for b in batches] == [3, 2]
        np.testing.assert_array_equal(batches[0][1].numpy(), [0, 0, 1])  # items 0, 2, 3
        np.testing.assert_array_equal(batches[1][1].numpy(), [0, 1])     # items 4, 5
    assert loader.skipped_in_last_pass == 3 and len(loader.bad_images) == 3
    records = list({id(r): r for r in caplog.records}.values())  # caplog may see a record twice
    skipped = [r.getMessage() for r in records if "skipping bad image" in r.getMessage()]
    assert len(skipped) == 3 and f"{list_path}:2" in skipped[0]
    assert sum("skipped 3 bad image(s) in this pass" in r.getMessage() for r in records) == 2


def test_a_batch_with_only_bad_images_is_skipped_whole(listed):
    root, good, make = listed
    list_path = make(bad={4: b"", 5: b"", 6: b"", 7: b""})
    batches = list(_loader(root, list_path, skip=True))
    assert [b[0].shape[0] for b in batches] == [4]


def test_skip_bad_images_must_be_a_boolean(listed):
    root, _, make = listed
    with pytest.raises(ConfigError) as e:
        _loader(root, make(), skip="yes")
    assert e.value.key == "DataLoader.Train.dataset.skip_bad_images"


@pytest.mark.parametrize("workers", [0, 2])
def test_a_bug_inside_a_dataset_surfaces_with_its_traceback_instead_of_hanging(listed, workers, monkeypatch):
    root, _, make = listed
    from ppfreeze.data import dataset as dataset_module

    def broken_finish(img, transposes):
        raise KeyError("a bug in finish_image")
    monkeypatch.setattr(dataset_module, "finish_image", broken_finish)
    loader = _loader(root, make(), workers, skip=True)  # a bug is never skipped
    with pytest.raises(RuntimeError) as e:
        list(loader)
    assert "KeyError: 'a bug in finish_image'" in str(e.value) and "Traceback" in str(e.value)


# ----------------------------------------------------------------------------- the tools
def _tool_config(tmp_path, root, train_list, val_list, workers, skip=False):
    def section(list_path):
        dataset = {"name": "ImageNetDataset", "image_root": str(root), "cls_label_path": list_path,
                   "transform_ops": OPS, "skip_bad_images": skip}
        return {"dataset": dataset, "sampler": {"name": "DistributedBatchSampler", "batch_size": 4, "shuffle": False},
                "loader": {"num_workers": workers, "use_shared_memory": False}}
    cfg = {"Global": {"output_dir": str(tmp_path / f"out_{workers}_{skip}"), "device": "cpu", "epochs": 1,
                      "eval_during_train": True,
                      "print_batch_step": 1, "image_shape": [3, 16, 16], "seed": 0, "num_threads": 1},
           "Arch": {"name": "ResNet18", "class_num": 2},
           "Loss": {"Train": [{"CELoss": {"weight": 1.0}}], "Eval": [{"CELoss": {"weight": 1.0}}]},
           "Optimizer": {"name": "Momentum", "momentum": 0.9, "lr": {"name": "Constant", "learning_rate": 0.01}},
           "DataLoader": {"Train": section(train_list), "Eval": section(val_list)},
           "Metric": {"Eval": [{"TopkAcc": {"topk": [1]}}]}}
    path = tmp_path / f"cfg_{workers}_{skip}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _run(tool, config, *overrides, timeout=180):
    cmd = [sys.executable, os.path.join(ROOT, "tools", tool), "-c", config] + [x for o in overrides for x in ("-o", o)]
    tic = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    return proc, time.time() - tic


def test_tools_stop_on_a_bad_image_and_skip_it_with_the_flag(listed, tmp_path):
    """train.py (bad image met by the in-training eval, 2 workers), eval.py, and both with the flag."""
    root, good, make = listed
    train_list = make(name="train.txt")
    val_list = make(bad={2: good[2][:-2]}, name="val.txt")   # EOI cut off
    bad_file = str(root / "img" / "val.txt_2.jpg")

    proc, seconds = _run("train.py", _tool_config(tmp_path, root, train_list, val_list, workers=2))
    assert proc.returncode == 3, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ppfreeze: data integrity error: ") and bad_file in last and f"{val_list}:3" in last
    assert "DataLoader.Eval.dataset.skip_bad_images" in last

    skip_config = _tool_config(tmp_path, root, train_list, val_list, workers=0, skip=True)
    proc, _ = _run("train.py", skip_config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = open(tmp_path / "out_0_True" / "ResNet18" / "train.log").read()
    assert f"skipping bad image {bad_file}" in log and "skipped 1 bad image(s) in this pass" in log

    weights = "Global.pretrained_model=" + str(tmp_path / "out_0_True" / "ResNet18" / "latest")
    no_skip = "DataLoader.Eval.dataset.skip_bad_images=false"
    proc, _ = _run("eval.py", skip_config, weights, no_skip)
    assert proc.returncode == 3 and bad_file in proc.stderr.splitlines()[-1], proc.stderr[-3000:]
    proc, _ = _run("eval.py", skip_config, weights)
    assert proc.returncode == 0 and "[Eval][Avg]" in proc.stderr + proc.stdout, proc.stderr[-3000:]


def test_dygraph_predict_names_bad_images_and_predicts_the_rest(listed, caplog):
    """tools/infer.py's loop (ppfreeze.engine.predict): same contract as the deploy tools."""
    from types import SimpleNamespace

    from _tiny_model import tiny_model
    from ppfreeze.engine.predict import predict
    from ppfreeze.errors import DataIntegrityError
    root, good, make = listed
    make(bad={3: good[3][:50]})
    infer = {"infer_imgs": str(root / "img"), "batch_size": 3,
             "transforms": OPS + [{"ToCHWImage": None}], "PostProcess": {"name": "Topk", "topk": 1}}
    engine = SimpleNamespace(config={"Infer": infer}, model=tiny_model(num_classes=2))
    with pytest.raises(DataIntegrityError) as e:
        predict(engine)
    assert "list.txt_3.jpg" in str(e.value) and "1 of 8 images could not be used; the other 7 were predicted" \
        in str(e.value)
    assert any("list.txt_3.jpg: cannot use this image" in r.getMessage() for r in caplog.records)
