"""Multi-label / attribute training and evaluation end to end, classification eval with epoch metrics,
re-id retrieval eval with cameras, and the Global keys involved."""
import os

import cv2
import numpy as np
import paddle
import pytest
import yaml

from ppfreeze.config.errors import ConfigError
from ppfreeze.config.schema import validate_config
from _scripts import load_tool

NORM = {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "order": ""}}


def make_attribute_set(root, n_train=12, n_val=6, seed=0):
    """Images whose colour channel c is bright iff attribute c is present; PaddleClas multi-label lists."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "img"), exist_ok=True)
    for split, n in (("train", n_train), ("val", n_val)):
        lines = []
        for i in range(n):
            attrs = rng.integers(0, 2, 3)
            img = np.clip(attrs[::-1] * 200 + rng.integers(0, 40, (40, 40, 3)), 0, 255).astype(np.uint8)  # BGR
            cv2.imwrite(os.path.join(root, "img", f"{split}{i}.jpg"), img)
            lines.append(f"img/{split}{i}.jpg\t{','.join(str(int(a)) for a in attrs)}")
        with open(os.path.join(root, f"{split}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")


def attribute_config(root):
    ops = [{"DecodeImage": {"to_rgb": True, "channel_first": False}}, {"ResizeImage": {"size": 32}}, NORM]

    def loader(split, shuffle):
        return {"dataset": {"name": "MultiLabelDataset", "image_root": root, "label_ratio": True,
                            "cls_label_path": os.path.join(root, f"{split}.txt"), "transform_ops": ops},
                "sampler": {"name": "DistributedBatchSampler", "batch_size": 4, "drop_last": False,
                            "shuffle": shuffle},
                "loader": {"num_workers": 0, "use_shared_memory": False}}

    loss = [{"MultiLabelLoss": {"weight": 1.0, "weight_ratio": True, "size_sum": True}}]
    return {
        "Global": {"checkpoints": None, "pretrained_model": None, "output_dir": os.path.join(root, "out"),
                   "device": "cpu", "save_interval": 1, "eval_during_train": True, "eval_interval": 1, "epochs": 2,
                   "print_batch_step": 1, "use_visualdl": False, "image_shape": [3, 32, 32], "seed": 3,
                   "use_multilabel": True},
        "Arch": {"name": "PPLCNet_x0_25", "class_num": 3},
        "Loss": {"Train": loss, "Eval": loss},
        "Optimizer": {"name": "Momentum", "momentum": 0.9, "lr": {"name": "Cosine", "learning_rate": 0.01}},
        "DataLoader": {"Train": loader("train", True), "Eval": loader("val", False)},
        "Metric": {"Train": [{"AccuracyScore": None}, {"HammingDistance": None}],
                   "Eval": [{"ATTRMetric": None}, {"MultiLabelMAP": {"map_type": "integral"}},
                            {"HammingDistance": None}]},
        "Infer": {"infer_imgs": os.path.join(root, "img", "val0.jpg"), "batch_size": 2,
                  "transforms": ops + [{"ToCHWImage": None}],
                  "PostProcess": {"name": "MultiLabelThreshOutput", "threshold": 0.5}},
    }


def test_multilabel_attribute_training_and_eval_end_to_end(tmp_path, caplog):
    root = str(tmp_path)
    make_attribute_set(root)
    path = tmp_path / "attr.yaml"
    path.write_text(yaml.safe_dump(attribute_config(root)))
    assert load_tool("train").main(["-c", str(path)]) == 0
    out = tmp_path / "out" / "PPLCNet_x0_25"
    log = (out / "train.log").read_text()
    eval_lines = [ln for ln in log.splitlines() if "[Eval][Epoch 2][Avg]" in ln]
    assert eval_lines, log[-2000:]
    keys = [part.split(":")[0].strip() for part in eval_lines[0].split("[Avg]")[1].split(",")]
    assert keys == ["ma", "label_f1", "label_pos_recall", "label_neg_recall", "instance_f1", "instance_acc",
                    "instance_prec", "instance_recall", "MultiLabelMAP", "HammingDistance", "MultiLabelLoss", "loss"]
    assert "Saved best model (ma " in log and "HammingDistance" in log.split("[Eval]")[0]   # train logs too
    assert (out / "best_model.pdparams").exists()
    best = str(out / "best_model")
    assert load_tool("eval").main(["-c", str(path), "-o", f"Global.pretrained_model={best}"]) == 0
    caplog.clear()
    assert load_tool("infer").main(["-c", str(path), "-o", f"Global.pretrained_model={best}"]) == 0
    assert "'class_ids'" in caplog.text and "val0.jpg" in caplog.text
    # exported like PaddleClas: a sigmoid (not a softmax) ends a multi-label model
    inference = tmp_path / "inference"
    assert load_tool("export_model").main(["-c", str(path), "-o", f"Global.pretrained_model={best}",
                                           "-o", f"Global.save_inference_dir={inference}"]) == 0
    meta = yaml.safe_load((inference / "inference.yml").read_text())
    assert meta["Global"]["sigmoid"] is True and meta["Global"]["softmax"] is False


def test_export_output_activation_follows_paddleclas_rule():
    from ppfreeze.export.wrapper import is_multilabel, split_export_keys
    assert is_multilabel({"Global": {"use_multilabel": True}})
    assert is_multilabel({"Global": {}, "Metric": {"Eval": [{"ATTRMetric": None}, {"TopkAcc": {}}]}})
    assert not is_multilabel({"Global": {}, "Metric": {"Eval": [{"TopkAcc": {}}, {"ATTRMetric": None}]}})
    _, options = split_export_keys({"name": "ResNet18", "infer_add_softmax": True}, multilabel=True)
    assert options.add_sigmoid and not options.add_softmax
    assert split_export_keys({"name": "ResNet18"})[1].add_softmax


class FakeEngine:
    """What the evaluation functions read from an Engine."""

    def __init__(self, config, model):
        self.config, self.glob, self.model, self.seed = config, config["Global"], model, 0


class ColourLogits(paddle.nn.Layer):
    """A 'model' whose output is each image's mean colour: logits (or features) known in advance."""

    def __init__(self, key=None):
        super().__init__()
        self.key = key

    def forward(self, x):
        out = x.mean(axis=[2, 3])
        return {self.key: out} if self.key else out


def test_classification_eval_orders_epoch_and_batch_metrics(tmp_path):
    from ppfreeze.engine.evaluation import eval_classification
    from ppfreeze.metric.tpr_at_fpr import tpr_at_fpr
    rng = np.random.default_rng(1)
    colours = rng.integers(0, 256, (10, 3))
    lines = []
    for i, c in enumerate(colours):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 8, 3), c[::-1], np.uint8))
        lines.append(f"{i}.png {int(c[1] > c[0])}")
    (tmp_path / "val.txt").write_text("\n".join(lines) + "\n")
    ops = [{"DecodeImage": {"to_rgb": True}}, {"NormalizeImage": {"scale": "1.0/255.0", "order": "",
                                                                   "mean": [0, 0, 0], "std": [1, 1, 1]}}]
    config = {"Global": {},
              "DataLoader": {"Eval": {"dataset": {"name": "ImageNetDataset", "image_root": str(tmp_path),
                                                  "cls_label_path": str(tmp_path / "val.txt"), "transform_ops": ops},
                                      "sampler": {"batch_size": 3, "shuffle": False, "drop_last": False}}},
              "Loss": {"Eval": [{"CELoss": {"weight": 1.0}}]},
              "Metric": {"Eval": [{"TprAtFpr": {"max_fpr": 0.2}}, {"TopkAcc": {"topk": [1]}}]}}
    with paddle.no_grad():
        metrics = eval_classification(FakeEngine(config, ColourLogits()))
    assert list(metrics) == ["tpr", "fpr", "threshold", "top1", "CELoss", "loss"]
    logits = colours[:, :3].astype(np.float32) / 255.0
    scores = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True))[:, 1]
    labels = colours[:, 1] > colours[:, 0]
    expected = tpr_at_fpr(scores[labels].astype(np.float32), scores[~labels].astype(np.float32), 0.2)
    assert metrics["tpr"] == pytest.approx(expected["tpr"]) and metrics["threshold"] == expected["threshold"]
    assert metrics["top1"] == pytest.approx(np.mean(np.argmax(logits, 1) == labels))


def test_reid_retrieval_eval_excludes_same_camera_matches(tmp_path):
    from ppfreeze.engine.evaluation import eval_retrieval
    base = tmp_path / "market1501" / "Market-1501-v15.09.15"
    images = {"query": {"0001_c1s1_000001_00.jpg": (0, 0, 255), "0002_c1s1_000001_00.jpg": (0, 255, 0)},
              "bounding_box_test": {"0001_c1s1_000002_00.jpg": (0, 0, 255),   # same person, same camera
                                    "0003_c2s1_000001_00.jpg": (0, 20, 230),  # look-alike
                                    "0001_c2s1_000003_00.jpg": (0, 50, 200),  # the real match
                                    "0002_c3s1_000001_00.jpg": (0, 250, 10)}}
    for split, files in images.items():
        for name, bgr in files.items():
            os.makedirs(base / split, exist_ok=True)
            cv2.imwrite(str(base / split / name), np.full((8, 8, 3), bgr, np.uint8))
    ops = [{"NormalizeImage": {"scale": "1.0/255.0", "order": "", "mean": [0, 0, 0], "std": [1, 1, 1]}}]

    def side(split):
        return {"dataset": {"name": "Market1501", "image_root": str(tmp_path), "cls_label_path": split,
                            "transform_ops": ops},
                "sampler": {"name": "DistributedBatchSampler", "batch_size": 2, "shuffle": False, "drop_last": False}}

    config = {"Global": {"eval_mode": "retrieval"},
              "DataLoader": {"Eval": {"Query": side("query"), "Gallery": side("bounding_box_test")}},
              "Metric": {"Eval": [{"Recallk": {"topk": [1, 2]}}, {"mAP": {}}, {"Precisionk": {"topk": [1]}}]}}
    with paddle.no_grad():
        metrics = eval_retrieval(FakeEngine(config, ColourLogits("features")))
    # person 1: the same-camera copy is skipped, the look-alike ranks first (recall@1 0, AP 1/2); person 2: found
    assert metrics == pytest.approx({"recall1": 0.5, "recall2": 1.0, "mAP": 0.75, "precision@1": 0.5})


def test_global_keys_use_multilabel_and_eval_mode(caplog):
    from ppfreeze.engine.evaluation import evaluate
    validate_config({"Global": {"use_multilabel": True}, "Arch": {"name": "ResNet18"}})
    assert "use_multilabel" not in caplog.text   # a known key now, not "ignored"
    with pytest.raises(ConfigError) as e:
        validate_config({"Global": {"use_multilabel": "yes"}, "Arch": {"name": "ResNet18"}})
    assert e.value.key == "Global.use_multilabel"
    with pytest.raises(ConfigError, match="'adaface': face verification") as e:
        evaluate(FakeEngine({"Global": {"eval_mode": "adaface"}}, None))
    assert e.value.key == "Global.eval_mode"
