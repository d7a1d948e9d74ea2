"""Deploy tools lose nothing: a bad image is named, the rest are done and saved, the exit code says so.

One exported ResNet18 (32 px, 16 outputs, seeded weights) serves as classifier and as feature
extractor; ``build_gallery.py`` runs twice at once in separate processes.
"""
import json
import os
import subprocess
import sys

import paddle
import pytest
import yaml

from ppfreeze.arch import build_model
from ppfreeze.config import load_config
from ppfreeze.export import export_model
from ppfreeze.retrieval import GalleryIndex
from make_demo_data import make_demo_dataset
from _scripts import load_deploy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPS = [{"DecodeImage": {"to_rgb": True}}, {"ResizeImage": {"size": 32}},
       {"NormalizeImage": {"scale": "1.0/255.0", "order": ""}}, {"ToCHWImage": None}]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """(exported model dir, demo data root, images dir with 3 good images, 2 bad ones and 1 more good one)."""
    root = tmp_path_factory.mktemp("deploy")
    demo = make_demo_dataset(str(root / "demo"), train_per_class=2, val_per_class=1)["root"]
    paddle.seed(5)
    weights = str(root / "weights")
    paddle.save(build_model({"name": "ResNet18", "class_num": 16}).state_dict(), weights + ".pdparams")
    cfg = {"Global": {"pretrained_model": weights, "device": "cpu", "image_shape": [3, 32, 32],
                      "output_dir": str(root / "out")},
           "Arch": {"name": "ResNet18", "class_num": 16},
           "Infer": {"infer_imgs": demo, "batch_size": 2, "transforms": OPS,
                     "PostProcess": {"name": "Topk", "topk": 2}}}
    (root / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    export_model(load_config(str(root / "cfg.yaml")), str(root / "inference"))
    images = root / "images"
    images.mkdir()
    val = sorted(os.path.join(d, f) for d, _, fs in os.walk(os.path.join(demo, "images", "val")) for f in fs)
    for i, src in enumerate(val[:4]):
        (images / f"{i}_good.jpg").write_bytes(open(src, "rb").read())
    (images / "1_truncated.jpg").write_bytes(open(val[4], "rb").read()[:300])
    (images / "2_empty.jpg").write_bytes(b"")
    return str(root / "inference"), demo, str(images)


def _lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_predict_cls_names_bad_images_saves_the_rest_and_exits_3(model, tmp_path, capsys, caplog):
    model_dir, _, images = model
    saved = str(tmp_path / "results.jsonl")
    code = load_deploy("predict_cls").main(
        ["-c", os.path.join(ROOT, "deploy", "configs", "inference_cls.yaml"), "-o", f"Global.infer_imgs={images}",
         "-o", f"Global.inference_model_dir={model_dir}", "-o", "Global.batch_size=2",
         "-o", f"Global.save_results={saved}", "-o", "Global.cpu_num_threads=1", "-o", "Global.benchmark=false"])
    assert code == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "2 of 6 images could not be used" in err and "the other 4 were predicted" in err
    assert err.startswith("ppfreeze: data integrity error: ") and "1_truncated.jpg" in err
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "1_truncated.jpg: cannot use this image: damaged JPEG" in logged and "2_empty.jpg" in logged
    results = _lines(saved)
    assert len(results) == 6   # every image accounted for (a batch: its failures, then its results)
    assert [os.path.basename(r["file_name"]) for r in results if "error" in r] == ["1_truncated.jpg", "2_empty.jpg"]
    good = [r for r in results if "error" not in r]
    assert len(good) == 4 and all(len(r["class_ids"]) == 2 for r in good)


def test_save_results_is_written_batch_by_batch(model, tmp_path, monkeypatch):
    """A crash in the third batch keeps the first two batches' results on disk."""
    model_dir, _, images = model
    predict_cls = load_deploy("predict_cls")
    saved = str(tmp_path / "results.jsonl")
    calls = []
    original = predict_cls._postprocess

    def crash_on_third(post, output, paths):
        calls.append(paths)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(post, output, paths)
    monkeypatch.setattr(predict_cls, "_postprocess", crash_on_third)
    cfg = {"Global": {**{k: d for k, (_, d) in load_deploy("utils").GLOBAL_DEFAULTS.items()},
                      "infer_imgs": images, "inference_model_dir": model_dir,
                      "cpu_num_threads": 1, "batch_size": 1, "save_results": saved}}
    with pytest.raises(KeyboardInterrupt):
        predict_cls.predict(cfg)
    results = _lines(saved)
    assert len([r for r in results if "class_ids" in r]) == 2   # the two batches before the crash


def test_build_gallery_and_predict_rec_go_on_past_bad_images(model, tmp_path, capsys):
    model_dir, _, images = model
    build_gallery, predict_rec = load_deploy("build_gallery"), load_deploy("predict_rec")
    names = sorted(os.listdir(images))
    listing = tmp_path / "gallery.txt"
    listing.write_text("".join(f"{name}\tlabel_{name[0]}\n" for name in names))
    index_dir = str(tmp_path / "index")
    common = ["-o", f"Global.rec_inference_model_dir={model_dir}", "-o", f"IndexProcess.index_dir={index_dir}",
              "-o", "Global.cpu_num_threads=1"]
    build = ["-c", os.path.join(ROOT, "deploy", "configs", "build_gallery.yaml"), *common,
             "-o", f"IndexProcess.image_root={images}", "-o", f"IndexProcess.data_file={listing}",
             "-o", "IndexProcess.embedding_size=16", "-o", "IndexProcess.index_method=Flat",
             "-o", "IndexProcess.batch_size=4"]
    assert build_gallery.main(build) == 3
    err = capsys.readouterr().err
    assert "2 of 6 images could not be used" in err and "the other 4 were indexed" in err
    assert len(GalleryIndex.load(index_dir)) == 4

    saved = str(tmp_path / "rec.jsonl")
    code = predict_rec.main(["-c", os.path.join(ROOT, "deploy", "configs", "inference_rec.yaml"), *common,
                             "-o", f"Global.infer_imgs={images}", "-o", "IndexProcess.score_thres=null",
                             "-o", f"Global.save_results={saved}", "-o", "Global.batch_size=3"])
    assert code == 3
    results = _lines(saved)
    assert len(results) == 6 and sum("error" in r for r in results) == 2
    for r in results:
        if "error" not in r:   # each good query is in the gallery: its own best match
            assert r["results"][0]["label"] == f"label_{os.path.basename(r['file_name'])[0]}"
            assert r["results"][0]["score"] > 0.999


def test_two_build_gallery_appends_at_once_keep_every_item(model, tmp_path):
    model_dir, demo, _ = model
    gallery = [line for line in open(os.path.join(demo, "gallery_label.txt")).read().splitlines() if line]
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text("".join(f"{line.split(chr(9))[0]}\tfirst\n" for line in gallery))
    second.write_text("".join(f"{line.split(chr(9))[0]}\tsecond\n" for line in gallery))
    index_dir = str(tmp_path / "index")

    def command(listing, operation):
        return [sys.executable, os.path.join(ROOT, "deploy", "python", "build_gallery.py"),
                "-c", os.path.join(ROOT, "deploy", "configs", "build_gallery.yaml"),
                "-o", f"Global.rec_inference_model_dir={model_dir}", "-o", f"IndexProcess.index_dir={index_dir}",
                "-o", f"IndexProcess.image_root={demo}", "-o", f"IndexProcess.data_file={listing}",
                "-o", "IndexProcess.embedding_size=16", "-o", f"IndexProcess.index_operation={operation}",
                "-o", "Global.cpu_num_threads=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    assert subprocess.run(command(first, "new"), capture_output=True, env=env, timeout=120).returncode == 0
    procs = [subprocess.Popen(command(listing, "append"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
             for listing in (first, second)]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err.decode()[-2000:]
    labels = list(GalleryIndex.load(index_dir).id_to_label().values())
    assert len(labels) == 3 * len(gallery)   # before: 2 x len(gallery), one append silently lost
    assert labels.count("first") == 2 * len(gallery) and labels.count("second") == len(gallery)


def test_exported_directory_has_ordinary_permissions(model):
    """It used to be 0700 (tempfile.mkdtemp's mode), unreadable to a serving account."""
    import stat
    model_dir = model[0]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(model_dir).st_mode) == 0o777 & ~umask
    for name in os.listdir(model_dir):
        assert stat.S_IMODE(os.stat(os.path.join(model_dir, name)).st_mode) == 0o666 & ~umask, name
