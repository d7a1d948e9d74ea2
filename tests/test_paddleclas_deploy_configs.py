"""PaddleClas's deploy config layout runs through our deploy tools.

The configs are built here with the sections and keys PaddleClas's ``deploy/configs`` files use
(``inference_cls.yaml``, PULC's, ``inference_general.yaml``, ``inference_rec.yaml``,
``inference_det.yaml``, the binary and the PaddleClas 2.2 ``build_*.yaml`` gallery layouts),
with small sizes; tools/dev/run_paddleclas_deploy_configs.py runs PaddleClas's own files.
"""
import json
import os

import numpy as np
import paddle
import pytest
import yaml

from ppfreeze.arch import build_model
from ppfreeze.config import load_config
from ppfreeze.export import export_model
from make_demo_data import make_demo_dataset
from test_deploy_failures import load_deploy

OPS = [{"DecodeImage": {"to_rgb": True}}, {"ResizeImage": {"size": 32}},
       {"NormalizeImage": {"scale": "1.0/255.0", "order": ""}}, {"ToCHWImage": None}]
# Global keys every PaddleClas deploy config carries
PADDLECLAS_GLOBAL = {"batch_size": 2, "use_gpu": False, "enable_mkldnn": True, "cpu_num_threads": 1,
                     "enable_benchmark": False, "use_fp16": False, "ir_optim": True, "use_tensorrt": False,
                     "gpu_mem": 8000, "enable_profile": False}
NORMALIZE = {"NormalizeImage": {"scale": 0.00392157, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                "order": "", "channel_num": 3}}
DETECTOR = {"det_inference_model_dir": "./models/picodet_infer", "rec_nms_thresold": 0.05, "image_shape": [3, 640, 640],
            "threshold": 0.2, "max_det_results": 5, "label_list": ["foreground"]}


def _export(root, name, arch):
    paddle.seed(3)
    weights = str(root / f"{name}_weights")
    paddle.save(build_model(arch).state_dict(), weights + ".pdparams")
    cfg = {"Global": {"pretrained_model": weights, "device": "cpu", "image_shape": [3, 32, 32],
                      "output_dir": str(root / "out")},
           "Arch": arch, "Infer": {"infer_imgs": str(root), "batch_size": 2, "transforms": OPS}}
    (root / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    export_model(load_config(str(root / f"{name}.yaml")), str(root / name))
    return str(root / name)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(classifier dir, recognizer dir, images dir with 4 images, gallery list 'path<TAB>label', image root)."""
    root = tmp_path_factory.mktemp("pcdeploy")
    demo = make_demo_dataset(str(root / "demo"), train_per_class=1, val_per_class=1)["root"]
    cls = _export(root, "cls", {"name": "ResNet18", "class_num": 4})
    rec = _export(root, "rec", {"name": "RecModel", "infer_output_key": "features", "Backbone": {"name": "ResNet18"},
                                "BackboneStopLayer": {"name": "flatten"},
                                "Neck": {"name": "FC", "embedding_size": 512, "class_num": 16}})
    images = root / "images"
    images.mkdir()
    val = sorted(os.path.join(d, f) for d, _, fs in os.walk(os.path.join(demo, "images", "val")) for f in fs)
    for i, src in enumerate(val[:4]):
        (images / f"{i}.jpg").write_bytes(open(src, "rb").read())
    with open(os.path.join(demo, "train_list.txt")) as f:
        lines = [line.split() for line in f if line.strip()][:6]
    gallery = root / "gallery.txt"
    gallery.write_text("".join(f"{p}\t{label}\n" for p, label in lines))
    return cls, rec, str(images), str(gallery), demo


def _write(tmp_path, cfg, name="deploy.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _cls_config(setup, tmp_path, ops=None, post=None):
    cls, _, images, _, _ = setup
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"{i} class_{i}\n" for i in range(4)))
    return {"Global": {"infer_imgs": images, "inference_model_dir": cls, **PADDLECLAS_GLOBAL},
            "PreProcess": {"transform_ops": ops or [{"ResizeImage": {"resize_short": 36}}, {"CropImage": {"size": 32}},
                                                    NORMALIZE, {"ToCHWImage": None}]},
            "PostProcess": post or {"main_indicator": "Topk",
                                    "Topk": {"topk": 2, "class_id_map_file": str(labels)},
                                    "SavePreLabel": {"save_dir": str(tmp_path / "pre_label")}}}


def _lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_classification_layout_runs_with_save_pre_label(setup, tmp_path, caplog):
    saved = str(tmp_path / "results.jsonl")
    code = load_deploy("predict_cls").main(["-c", _write(tmp_path, _cls_config(setup, tmp_path)),
                                            "-o", f"Global.save_results={saved}"])
    assert code == 0
    results = _lines(saved)
    assert len(results) == 4 and all(len(r["class_ids"]) == 2 for r in results)
    # SavePreLabel: each image copied into <save_dir>/<its top-1 class id>/ (PaddleClas's)
    for r in results:
        name = os.path.basename(r["file_name"])
        assert os.path.isfile(tmp_path / "pre_label" / str(r["class_ids"][0]) / name), r
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned == ["Global.enable_profile is a PaddleClas key that ppfreeze deploy ignores"]


def test_transform_ops_are_indexed_as_written(setup, tmp_path, capsys):
    bad_first = [{"ResizeImage": {"size": 32, "bogus": 1}}, NORMALIZE, {"ToCHWImage": None}]
    assert load_deploy("predict_cls").main(["-c", _write(tmp_path, _cls_config(setup, tmp_path, bad_first))]) == 2
    err = capsys.readouterr().err
    assert "PreProcess.transform_ops[0].ResizeImage" in err and "bogus" in err, err
    bad_second = [{"DecodeImage": {"to_rgb": True}}, {"ResizeImage": {"size": 32, "bogus": 1}}, NORMALIZE]
    assert load_deploy("predict_cls").main(["-c", _write(tmp_path, _cls_config(setup, tmp_path, bad_second))]) == 2
    assert "PreProcess.transform_ops[1].ResizeImage" in capsys.readouterr().err


def test_preprocessing_that_does_not_fit_the_model_is_a_config_error(setup, tmp_path, capsys):
    four = [{"ResizeImage": {"size": 32}}, {"NormalizeImage": {**NORMALIZE["NormalizeImage"], "channel_num": 4}},
            {"ToCHWImage": None}]
    assert load_deploy("predict_cls").main(["-c", _write(tmp_path, _cls_config(setup, tmp_path, four))]) == 2
    err = capsys.readouterr().err
    assert "gives images of shape [4, 32, 32], but the model takes 3-channel CHW input" in err, err
    hwc = [{"ResizeImage": {"size": 32}}, NORMALIZE]
    assert load_deploy("predict_cls").main(["-c", _write(tmp_path, _cls_config(setup, tmp_path, hwc))]) == 2
    assert "add ToCHWImage after NormalizeImage" in capsys.readouterr().err


def _general(setup, tmp_path, **index):
    """PaddleClas's inference_general.yaml layout: detector + recognizer + index."""
    _, rec, images, gallery, root = setup
    return {
        "Global": {"infer_imgs": images, "rec_inference_model_dir": rec, **DETECTOR, **PADDLECLAS_GLOBAL},
        "DetPreProcess": {"transform_ops": [{"DetResize": {"interp": 2, "keep_ratio": False, "target_size": [640, 640]}},
                                            {"DetNormalizeImage": {"is_scale": True}}, {"DetPermute": {}}]},
        "DetPostProcess": {},
        "RecPreProcess": {"transform_ops": [
            {"ResizeImage": {"size": [32, 32], "return_numpy": False, "interpolation": "bilinear", "backend": "cv2"}},
            {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                "order": "hwc"}},
            {"ToCHWImage": None}]},
        "RecPostProcess": None,
        "IndexProcess": {"index_method": "Flat", "image_root": root, "index_dir": str(tmp_path / "index"),
                         "data_file": gallery, "index_operation": "new", "delimiter": "\t", "dist_type": "IP",
                         "embedding_size": 16, "batch_size": 2, "return_k": 3, "score_thres": 0.0, **index},
    }


def test_general_recognition_layout_builds_and_searches(setup, tmp_path, caplog):
    path = _write(tmp_path, _general(setup, tmp_path))
    assert load_deploy("build_gallery").main(["-c", path]) == 0
    assert not [r for r in caplog.records if "detector" in r.getMessage() and r.levelname == "WARNING"]
    caplog.clear()
    saved = str(tmp_path / "rec.jsonl")
    assert load_deploy("predict_rec").main(["-c", path, "-o", f"Global.save_results={saved}"]) == 0
    results = _lines(saved)
    assert len(results) == 4 and all(len(r["results"]) == 3 for r in results)
    detector = [r.getMessage() for r in caplog.records if "no main-body detector runs here" in r.getMessage()]
    assert len(detector) == 1 and "DetPreProcess" in detector[0] and "Global.det_inference_model_dir" in detector[0]


def test_paddleclas_2_2_gallery_layout_and_eval_section(setup, tmp_path, caplog):
    cfg = _general(setup, tmp_path, pq_size=100)
    cfg["IndexProcess"]["index_path"] = cfg["IndexProcess"].pop("index_dir")
    for key in ("index_method", "index_operation", "batch_size"):   # build_*.yaml of PaddleClas 2.2 had none
        cfg["IndexProcess"].pop(key)
    cfg["Eval"] = {"name": "Vechicles", "image_root": "./Vechicles", "cls_label_path": "./q.txt"}
    path = _write(tmp_path, cfg)
    assert load_deploy("build_gallery").main(["-c", path]) == 0
    assert os.path.isdir(cfg["IndexProcess"]["index_path"])
    logged = caplog.text
    assert "IndexProcess.index_path: PaddleClas 2.2's name for index_dir" in logged
    assert "IndexProcess.pq_size: a setting of PaddleClas 2.2's own search engine" in logged
    assert "Eval: PaddleClas's retrieval-evaluation section has no effect on build_gallery; ignored" in logged
    assert load_deploy("predict_rec").main(["-c", path]) == 0


def test_rec_layout_without_index_prints_features(setup, tmp_path, capsys):
    cfg = _general(setup, tmp_path)
    for section in ("DetPreProcess", "DetPostProcess", "IndexProcess"):   # PaddleClas's inference_rec.yaml
        cfg.pop(section)
    saved = str(tmp_path / "features.jsonl")
    assert load_deploy("predict_rec").main(["-c", _write(tmp_path, cfg), "-o", f"Global.save_results={saved}"]) == 0
    results = _lines(saved)
    assert len(results) == 4
    for r in results:
        assert len(r["features"]) == 16 and abs(np.linalg.norm(r["features"]) - 1.0) < 1e-5
    assert os.path.basename(results[0]["file_name"]) in capsys.readouterr().out


@pytest.mark.parametrize("change,message", [
    ("detector_only", "runs PaddleClas's main-body detector only, and ppfreeze has no detector"),
    ("binarize", "RecPostProcess: Binarize (binary features searched by Hamming distance) is not implemented"),
    ("hamming", "IndexProcess.dist_type: hamming (binary features) is not implemented"),
    ("hamming_radius", "IndexProcess.hamming_radius: binary features searched by Hamming distance"),
])
def test_what_would_change_results_is_refused(setup, tmp_path, capsys, change, message):
    cfg = _general(setup, tmp_path)
    if change == "detector_only":   # PaddleClas's inference_det.yaml
        cfg = {"Global": {"infer_imgs": setup[2], **DETECTOR, **PADDLECLAS_GLOBAL},
               "DetPreProcess": cfg["DetPreProcess"], "DetPostProcess": {}}
    elif change == "binarize":
        cfg["RecPostProcess"] = {"main_indicator": "Binarize", "Binarize": {"method": "round"}}
    elif change == "hamming":
        cfg["IndexProcess"]["dist_type"] = "hamming"
    else:
        cfg["IndexProcess"]["hamming_radius"] = 100
    path = _write(tmp_path, cfg)
    for tool in ("build_gallery", "predict_rec"):
        assert load_deploy(tool).main(["-c", path]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
