"""Export and deploy: exported models give the dygraph answers on jit.load and paddle.inference.

Tolerance for agreement (stated once, used everywhere): softmax probabilities / features within
ATOL=1e-4 + RTOL=1e-3, and identical top-1 on every demo image. oneDNN reorders float sums,
so bit equality is not expected; measured differences here are ~1e-6.
"""
import glob
import json
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest
import yaml

from ppfreeze.arch import MODELS, ArchModel, build_model
from ppfreeze.config import ConfigError, load_config
from ppfreeze.data import create_operators, transform
from make_demo_data import make_demo_dataset
from ppfreeze.export import export_model, find_model_files, read_inference_yml
from _scripts import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ATOL, RTOL = 1e-4, 1e-3
SIZE = 32
NORMALIZE = {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.485, 0.456, 0.406],
                                "std": [0.229, 0.224, 0.225], "order": ""}}
INFER_OPS = [{"DecodeImage": {"to_rgb": True, "channel_first": False}}, {"ResizeImage": {"resize_short": 36}},
             {"CropImage": {"size": SIZE}}, NORMALIZE, {"ToCHWImage": None}]


class TinyEmbedNet(ArchModel):
    """Stand-in for RecModel: a ResNet18 trunk returning {"features", "logits"}."""

    def __init__(self, class_num: int = 4, embedding_size: int = 16):
        super().__init__()
        self.backbone = build_model({"name": "ResNet18", "class_num": embedding_size})
        self.head = paddle.nn.Linear(embedding_size, class_num)

    def forward(self, x):
        features = self.backbone(x)
        return {"features": features, "logits": self.head(features)}


if "TinyEmbedNet" not in MODELS:
    MODELS.register(TinyEmbedNet)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Demo images and seeded weights for a classifier and an embedding model (nothing trained)."""
    root = tmp_path_factory.mktemp("export")
    demo = make_demo_dataset(str(root / "ppfreeze_demo"), train_per_class=2, val_per_class=1)
    weights = {}
    for arch in ({"name": "ResNet18", "class_num": 12}, {"name": "TinyEmbedNet", "class_num": 12}):
        paddle.seed(3)
        path = str(root / f"{arch['name']}_weights")
        paddle.save(build_model(arch).state_dict(), path + ".pdparams")
        weights[arch["name"]] = path
    images = sorted(glob.glob(os.path.join(demo["root"], "images", "val", "*", "*.jpg")))
    return {"root": root, "demo": demo, "weights": weights, "images": images}


def write_config(work, tmp_path, arch="ResNet18", freeze=None, **glob):
    cfg = {"Global": {"pretrained_model": work["weights"].get(arch), "output_dir": str(tmp_path / "output"),
                      "device": "cpu", "image_shape": [3, SIZE, SIZE], "seed": 1,
                      "save_inference_dir": str(tmp_path / "inference"), **glob},
           "Arch": {"name": arch, "class_num": 12},
           "Infer": {"infer_imgs": work["images"][0], "batch_size": 4, "transforms": INFER_OPS,
                     "PostProcess": {"name": "Topk", "topk": 3,
                                     "class_id_map_file": work["demo"]["label_list"]}}}
    if freeze:
        cfg["Freeze"] = freeze
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def image_batch(images):
    ops = create_operators(INFER_OPS)
    return np.stack([transform(open(p, "rb").read(), ops) for p in images]).astype("float32")


def dygraph_output(arch_cfg, weights, batch, key="logits", softmax=True):
    model = build_model(arch_cfg)
    model.set_state_dict(paddle.load(weights + ".pdparams"))
    model.eval()
    with paddle.no_grad():
        out = model(paddle.to_tensor(batch))
    out = out[key] if isinstance(out, dict) else out
    return (paddle.nn.functional.softmax(out, axis=-1) if softmax else out).numpy()


def predictor(model_dir, **kwargs):
    return load_script("deploy/python/predictor.py", "ppfreeze_deploy_predictor").Predictor(model_dir, **kwargs)


def assert_agree(expected, got):
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=RTOL)
    assert (got.argmax(-1) == expected.argmax(-1)).all()


def test_classifier_export_agrees_everywhere_and_writes_inference_yml(work, tmp_path):
    path = write_config(work, tmp_path, freeze={"until": "stage2"})
    result = export_model(load_config(path))
    files = find_model_files(result.save_dir)
    assert files.format == "json" and files.model_file.endswith("inference.json")
    batch = image_batch(work["images"])
    expected = dygraph_output({"name": "ResNet18", "class_num": 12}, work["weights"]["ResNet18"], batch)
    assert np.allclose(expected.sum(-1), 1.0, atol=1e-5)  # infer_add_softmax defaults to true

    with paddle.no_grad():
        jit_out = paddle.jit.load(os.path.join(result.save_dir, "inference"))(paddle.to_tensor(batch)).numpy()
    assert_agree(expected, jit_out)
    for mkldnn in (True, False):
        cache = str(tmp_path / f"optimized_{mkldnn}")
        out = predictor(result.save_dir, enable_mkldnn=mkldnn, cpu_num_threads=2, optim_cache_dir=cache).run(batch)
        assert_agree(expected, out)
        # What really runs: the optimised program holds oneDNN kernels only when asked for.
        program = open(os.path.join(cache, "_optimized.json"), encoding="utf-8").read()
        assert ("onednn_op." in program) == mkldnn

    meta = read_inference_yml(result.save_dir)
    assert meta["PreProcess"]["transform_ops"] == INFER_OPS
    assert meta["PostProcess"] == {"name": "Topk", "topk": 3, "class_id_map_file": "class_id_map.txt"}
    assert os.path.isfile(os.path.join(result.save_dir, "class_id_map.txt"))
    assert meta["LabelMap"][0] == "circle" and len(meta["LabelMap"]) == 12
    assert meta["Global"]["image_shape"] == [3, SIZE, SIZE] and meta["Global"]["model_name"] == "ResNet18"
    assert meta["Weights"]["missing"] == [] and meta["Weights"]["loaded"] > 0
    freeze = meta["Freeze"]
    assert freeze["params"]["tensors_frozen"] > 0 and freeze["method"]["used"]
    # The audit hash is that of the loaded weights' frozen tensors: the training run logs the same.
    from ppfreeze.freeze import FreezeAudit, build_freeze_plan
    model = build_model({"name": "ResNet18", "class_num": 12})
    model.set_state_dict(paddle.load(work["weights"]["ResNet18"] + ".pdparams"))
    audit = FreezeAudit(model, build_freeze_plan({"until": "stage2"}, model))
    audit.snapshot()
    assert freeze["audit"] == audit.summary()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".inference")]  # no staging left


def test_embedding_model_exports_features(work, tmp_path):
    path = write_config(work, tmp_path, arch="TinyEmbedNet")
    cfg = load_config(path, ["Arch.infer_output_key=features"])
    result = export_model(cfg)
    batch = image_batch(work["images"][:4])
    expected = dygraph_output({"name": "TinyEmbedNet", "class_num": 12}, work["weights"]["TinyEmbedNet"], batch,
                              key="features", softmax=False)
    out = predictor(result.save_dir, cpu_num_threads=2).run(batch)
    assert out.shape == (4, 16)
    assert_agree(expected, out)
    meta = read_inference_yml(result.save_dir)
    assert meta["Global"]["output_key"] == "features" and meta["Global"]["softmax"] is False
    assert meta["Global"]["model_outputs"] == ["features", "logits"]

    with pytest.raises(ConfigError, match="Did you mean: features") as err:
        export_model(load_config(path, ["Arch.infer_output_key=feature"]))
    assert err.value.key == "Arch.infer_output_key"


def test_a_model_onednn_cannot_run_falls_back_to_plain_cpu_kernels(work, tmp_path, monkeypatch, caplog):
    """Paddle 3.3.1's oneDNN path raises NotImplementedError for some ops (HRNet's interpolation):
    the predictor rebuilds itself without oneDNN, once, and says so."""
    path = write_config(work, tmp_path, arch="TinyEmbedNet")
    result = export_model(load_config(path, ["Arch.infer_output_key=features"]))
    batch = image_batch(work["images"][:2])
    runner = predictor(result.save_dir, enable_mkldnn=True, cpu_num_threads=1)
    assert "onednn" in runner.backend
    real_run = type(runner)._run

    def unimplemented_with_onednn(self, inputs):
        if self.config.mkldnn_enabled():
            raise NotImplementedError("(Unimplemented) ConvertPirAttribute2RuntimeAttribute not support")
        return real_run(self, inputs)
    monkeypatch.setattr(type(runner), "_run", unimplemented_with_onednn)
    with caplog.at_level("WARNING", logger="deploy"):
        out = runner.run(batch)
    assert "oneDNN cannot run this model (NotImplementedError" in caplog.text
    assert "onednn" not in runner.backend
    np.testing.assert_allclose(out, predictor(result.save_dir, enable_mkldnn=False).run(batch), rtol=1e-5, atol=1e-6)


def test_refuses_weights_that_do_not_load_and_allows_the_override(work, tmp_path, capsys):
    state = paddle.load(work["weights"]["ResNet18"] + ".pdparams")
    del state["fc.weight"]
    state["fc.bias"] = np.zeros([5], dtype="float32")  # another class_num
    partial = str(tmp_path / "partial")
    paddle.save(state, partial + ".pdparams")
    path = write_config(work, tmp_path)
    tool = load_script("tools/export_model.py", "ppfreeze_export_tool")

    assert tool.main(["-c", path, "-o", f"Global.pretrained_model={partial}"]) == 2
    message = capsys.readouterr().err
    assert "fc.weight" in message and "fc.bias (file [5] vs model [12])" in message
    assert "allow_missing_keys" in message
    assert not os.path.exists(tmp_path / "inference")

    assert tool.main(["-c", path, "-o", "Global.pretrained_model=null"]) == 2
    assert "random weights" in capsys.readouterr().err

    assert tool.main(["-c", path, "-o", f"Global.pretrained_model={partial}",
                      "-o", "Global.allow_missing_keys=True"]) == 0
    weights = read_inference_yml(str(tmp_path / "inference"))["Weights"]
    assert weights["missing"] == ["fc.weight"] and weights["mismatched"] == ["fc.bias"]


def test_failed_export_keeps_the_previous_model(work, tmp_path, monkeypatch):
    from ppfreeze.export import exporter
    path = write_config(work, tmp_path)
    first = export_model(load_config(path))
    before = {n: open(os.path.join(first.save_dir, n), "rb").read() for n in os.listdir(first.save_dir)}

    def broken_save(layer, image_shape, out_dir):
        open(os.path.join(out_dir, "inference.json"), "w").write("{half")
        raise RuntimeError("disk full")
    monkeypatch.setattr(exporter, "save_program", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        export_model(load_config(path))
    after = {n: open(os.path.join(first.save_dir, n), "rb").read() for n in os.listdir(first.save_dir)}
    assert after == before
    assert sorted(os.listdir(tmp_path)) == ["cfg.yaml", "inference", "output"]

    (tmp_path / "inference" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="notes.txt"):
        export_model(load_config(path))


def test_legacy_pdmodel_export_matches_pir(work, tmp_path):
    path = write_config(work, tmp_path)
    result = export_model(load_config(path, ["Global.export_format=pdmodel"]))
    files = find_model_files(result.save_dir)
    assert files.format == "pdmodel" and not os.path.exists(os.path.join(result.save_dir, "inference.json"))
    assert read_inference_yml(result.save_dir)["Global"]["format"] == "pdmodel"
    batch = image_batch(work["images"][:4])
    expected = dygraph_output({"name": "ResNet18", "class_num": 12}, work["weights"]["ResNet18"], batch)
    assert_agree(expected, predictor(result.save_dir, cpu_num_threads=2).run(batch))
    with pytest.raises(ConfigError, match="Global.export_format"):
        export_model(load_config(path, ["Global.export_format=onnx"]))


def test_onnx_export_agrees(work, tmp_path):
    pytest.importorskip("paddle2onnx", reason="optional extra (pip install -e .[onnx]); not installed in CI")
    pytest.importorskip("onnxruntime", reason="optional extra (pip install -e .[onnx]); not installed in CI")
    result = export_model(load_config(write_config(work, tmp_path)), onnx=True)
    batch = image_batch(work["images"][:4])
    expected = dygraph_output({"name": "ResNet18", "class_num": 12}, work["weights"]["ResNet18"], batch)
    assert_agree(expected, predictor(result.save_dir, use_onnx=True).run(batch))


def test_onnx_without_paddle2onnx_is_a_clear_error(work, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "paddle2onnx", None)  # makes the import fail
    with pytest.raises(ConfigError, match=r"pip install -e \.\[onnx\]"):
        export_model(load_config(write_config(work, tmp_path)), onnx=True)


def run_predict_cls(*overrides):
    cmd = [sys.executable, os.path.join(ROOT, "deploy/python/predict_cls.py"),
           "-c", os.path.join(ROOT, "deploy/configs/inference_cls.yaml")]
    for o in overrides:
        cmd += ["-o", o]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_predict_cls_end_to_end(work, tmp_path):
    result = export_model(load_config(write_config(work, tmp_path)))
    saved = str(tmp_path / "results.jsonl")
    proc = run_predict_cls(f"Global.infer_imgs={os.path.dirname(os.path.dirname(work['images'][0]))}",
                           f"Global.inference_model_dir={result.save_dir}", "Global.batch_size=5",
                           f"Global.save_results={saved}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [ln for ln in proc.stdout.splitlines() if "class id(s)" in ln]
    assert len(lines) == len(work["images"])
    results = [json.loads(line) for line in open(saved)]   # JSON Lines, written batch by batch
    expected = dygraph_output({"name": "ResNet18", "class_num": 12}, work["weights"]["ResNet18"],
                              image_batch(work["images"]))
    for r, probs in zip(results, expected):
        assert r["class_ids"] == [int(i) for i in np.argsort(-probs, kind="stable")[:3]]
        assert np.allclose(r["scores"], np.sort(probs)[::-1][:3], atol=1e-4)
        assert len(r["label_names"]) == 3
    assert results[0]["label_names"][0] in lines[0]

    bad = run_predict_cls("Global.batchsize=2", f"Global.inference_model_dir={result.save_dir}")
    assert bad.returncode == 2
    assert "Global.batchsize" in bad.stderr and "Did you mean: batch_size" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_deploy_does_not_import_training_code():
    code = ("import runpy, sys; runpy.run_path(sys.argv[1], run_name='not_main'); "
            "print(','.join(sorted(m for m in sys.modules if m.startswith('ppfreeze'))))")
    proc = subprocess.run([sys.executable, "-c", code, os.path.join(ROOT, "deploy/python/predict_cls.py")],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = proc.stdout.strip().splitlines()[-1].split(",")
    assert "ppfreeze.export.inference_yml" in loaded  # the check sees ppfreeze modules at all
    for training in ("ppfreeze.engine", "ppfreeze.arch", "ppfreeze.freeze", "ppfreeze.loss", "ppfreeze.optim"):
        assert training not in loaded


def test_export_weights_round_trip(work, tmp_path, capsys):
    tool = load_script("tools/export_weights.py", "ppfreeze_export_weights_tool")
    path = write_config(work, tmp_path)
    fc_file, merged = str(tmp_path / "fc.pdparams"), str(tmp_path / "merged.pdparams")
    assert tool.main(["-c", path, "--layer", "fc", "--output", fc_file]) == 0
    source = paddle.load(work["weights"]["ResNet18"] + ".pdparams")
    fc = paddle.load(fc_file)
    assert sorted(fc) == ["bias", "weight"]
    np.testing.assert_array_equal(np.array(fc["weight"]), np.array(source["fc.weight"]))

    assert tool.main(["-c", path, "--layer", "fcc", "--output", fc_file]) == 2
    assert "Did you mean: fc" in capsys.readouterr().err

    # Load the fc into a model with other (seed 99) trunk weights: fc comes from the file.
    paddle.seed(99)
    other = str(tmp_path / "other")
    paddle.save(build_model({"name": "ResNet18", "class_num": 12}).state_dict(), other + ".pdparams")
    assert tool.main(["-c", path, "-o", f"Global.pretrained_model={other}", "--layer", "fc",
                      "--load", fc_file, "--output", merged]) == 0
    state, trunk = paddle.load(merged), paddle.load(other + ".pdparams")
    np.testing.assert_array_equal(np.array(state["fc.weight"]), np.array(source["fc.weight"]))
    np.testing.assert_array_equal(np.array(state["stem.0.conv.weight"]), np.array(trunk["stem.0.conv.weight"]))


def test_deploy_config_sections_override_inference_yml(work, tmp_path, caplog):
    result = export_model(load_config(write_config(work, tmp_path)))
    utils = load_script("deploy/python/utils.py", "ppfreeze_deploy_utils")
    exported = utils.build_pipeline({}, result.save_dir)
    from_export, post = exported.ops, exported.post
    assert post.topk == 3 and post.class_id_map[0] == "circle" and exported.channels == 3
    # PaddleClas deploy style: no DecodeImage (added), main_indicator post-process, cwd-relative map.
    deploy_cfg = {"PreProcess": {"transform_ops": INFER_OPS[1:]},
                  "PostProcess": {"main_indicator": "Topk", "Topk": {"topk": 2}, "SavePreLabel": {"save_dir": "x"}}}
    with caplog.at_level("INFO", logger="deploy"):
        deployed = utils.build_pipeline(deploy_cfg, result.save_dir)
    overridden, post2 = deployed.ops, deployed.post
    assert "PreProcess from the deploy config overrides" in caplog.text
    assert post2.topk == 2 and post2.class_id_map is None and deployed.saver.save_dir == "x"
    data = open(work["images"][0], "rb").read()
    np.testing.assert_array_equal(transform(data, overridden), transform(data, from_export))
