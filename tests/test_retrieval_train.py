"""Retrieval training: RecModel + gears, triplet loss, P x K sampler, retrieval eval, end to end."""
import copy
import json
import math
import os
from collections import Counter

import numpy as np
import paddle
import pytest

from ppfreeze.arch import build_model
from ppfreeze.config import ConfigError
from ppfreeze.data.pk_sampler import DistributedRandomIdentitySampler, PKSampler
from ppfreeze.freeze import build_freeze_plan
from ppfreeze.loss import build_loss
from ppfreeze.loss.triplet import TripletLoss, TripletLossV2
from ppfreeze.engine.evaluation import embed_dataset, eval_retrieval
from ppfreeze.retrieval.metrics import recall_at_k
from _scripts import load_deploy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NORMALIZE = {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.485, 0.456, 0.406],
                                "std": [0.229, 0.224, 0.225], "order": ""}}
EVAL_OPS = [{"DecodeImage": {"to_rgb": True, "channel_first": False}}, {"ResizeImage": {"size": 32}}, NORMALIZE]
TRAIN_OPS = [{"DecodeImage": {"to_rgb": True, "channel_first": False}}, {"RandCropImage": {"size": 32}},
             {"RandFlipImage": {"flip_code": 1}}, NORMALIZE]


def rec_arch(head="ArcMargin", class_num=8, embedding=16, **head_kwargs):
    arch = {"name": "RecModel", "Backbone": {"name": "PPLCNet_x0_25"}, "BackboneStopLayer": {"name": "flatten"},
            "Neck": {"name": "FC", "embedding_size": 1280, "class_num": embedding}}
    if head == "FC":
        arch["Head"] = {"name": "FC", "embedding_size": embedding, "class_num": class_num}
    elif head:
        arch["Head"] = {"name": head, "embedding_size": embedding, "class_num": class_num, **head_kwargs}
    return arch


def loader_section(root, list_name, ops, sampler):
    return {"dataset": {"name": "ImageNetDataset", "image_root": root,
                        "cls_label_path": os.path.join(root, list_name), "transform_ops": ops},
            "sampler": sampler, "loader": {"num_workers": 0, "use_shared_memory": False}}


def eval_section(root, query="rec_query_list.txt", gallery="rec_gallery_list.txt"):
    plain = {"name": "DistributedBatchSampler", "batch_size": 8, "shuffle": False, "drop_last": False}
    return {"Query": loader_section(root, query, EVAL_OPS, plain),
            "Gallery": loader_section(root, gallery, EVAL_OPS, plain)}


# ----------------------------------------------------------------------------- RecModel
def test_recmodel_keys_outputs_and_stages():
    paddle.seed(0)
    model = build_model(rec_arch("ArcMargin", class_num=4, margin=0.2, scale=30.0))
    keys = list(model.state_dict())
    assert {k.split(".")[0] for k in keys} == {"backbone", "neck", "head"}
    assert "neck.fc.weight" in keys and "head.weight" in keys and "backbone.last_conv.weight" in keys
    assert "backbone.fc.weight" not in keys  # cut after flatten: the classifier is gone
    assert list(model.state_dict()["head.weight"].shape) == [16, 4]
    assert model.needs_label

    out = model(paddle.randn([2, 3, 32, 32]), paddle.to_tensor([0, 3]))
    assert list(out["backbone"].shape) == [2, 1280]
    assert list(out["features"].shape) == [2, 16] and out["features"] is out["neck"]
    assert list(out["logits"].shape) == [2, 4]

    stages = list(model.stages)
    assert stages == ["stem", "blocks2", "blocks3", "blocks4", "blocks5", "blocks6", "neck", "head"]
    assert model.stages["stem"] == ["backbone.conv1"] and "neck" in model.stages["neck"]
    # Freeze.until works as on the bare backbone: stem..blocks4 frozen, the rest trainable
    frozen = set(build_freeze_plan({"until": "blocks4"}, model).frozen_tensor_names(1))
    assert any(n.startswith("backbone.blocks4.") for n in frozen)
    assert not any(n.startswith(("backbone.blocks5.", "backbone.last_conv", "neck.", "head.")) for n in frozen)


def test_recmodel_without_head_returns_features_only_and_bad_config_errors(caplog):
    model = build_model(rec_arch(head=None))
    model.eval()
    out = model(paddle.randn([1, 3, 32, 32]))
    assert set(out) == {"backbone", "neck", "features"} and not model.needs_label
    # a stop layer the backbone lacks leaves it whole, as in PaddleClas, with a warning naming the fix
    build_model({**rec_arch(), "BackboneStopLayer": {"name": "flaten"}})
    assert "Arch.BackboneStopLayer.name" in caplog.text and "Did you mean: flatten" in caplog.text
    with pytest.raises(ConfigError) as e:
        build_model({**rec_arch(), "Neck": {"name": "FCC", "embedding_size": 1280, "class_num": 8}})
    assert e.value.key == "Arch.Neck.name" and "FC" in str(e.value)
    with pytest.raises(ConfigError) as e:
        build_model({**rec_arch(), "Neck": {"name": "BNNeck", "num_features": 1280,
                                            "bias_attr": {"learning_rat": 1e-20}}})
    assert e.value.key == "Arch.Neck.bias_attr.learning_rat"


@pytest.mark.parametrize("head,kwargs", [("FC", {}), ("ArcMargin", {"margin": 0.3, "scale": 10.0}),
                                         ("CosMargin", {"margin": 0.3, "scale": 10.0}),
                                         ("CircleMargin", {"margin": 0.25, "scale": 10.0})])
def test_head_logits_and_label_use(head, kwargs):
    from ppfreeze.arch.gears import GEARS
    paddle.seed(1)
    layer = GEARS.build({"name": head, "embedding_size": 8, "class_num": 5, **kwargs})
    x, label = paddle.randn([4, 8]), paddle.to_tensor([0, 1, 2, 4])
    if head == "FC":
        assert not layer.needs_label and list(layer(x).shape) == [4, 5]
        return
    cos = layer(x).numpy()                 # without a label: the cosines, unscaled (PaddleClas)
    plain = cos * kwargs["scale"]
    margined = layer(x, label).numpy()
    assert cos.shape == margined.shape == (4, 5)
    assert np.all(np.abs(cos) <= 1 + 1e-5)
    target = np.zeros((4, 5), bool)
    target[np.arange(4), label.numpy()] = True
    assert np.all(margined[target] < plain[target])  # the margin makes the true class harder
    if head in ("ArcMargin", "CosMargin"):
        np.testing.assert_allclose(margined[~target], plain[~target], rtol=1e-5)
    if head == "CosMargin":
        np.testing.assert_allclose(margined[target], plain[target] - 0.3 * 10.0, rtol=1e-5)
    if head == "ArcMargin":
        theta = np.arccos(np.clip(cos[target], -1, 1))
        expected = np.where(theta + 0.3 < np.pi, np.cos(theta + 0.3), cos[target] - np.sin(0.3) * 0.3) * 10.0
        np.testing.assert_allclose(margined[target], expected, atol=1e-3)
    layer.eval()
    np.testing.assert_allclose(layer(x, label).numpy(), cos, rtol=1e-6)  # no margin, no scale at eval


# ----------------------------------------------------------------------------- triplet loss
def test_triplet_loss_batch_hard_mining_hand_case():
    # 1-D features: labels 0,0,1,1 at 0, 1, 1.5, 3
    x = paddle.to_tensor([[0.0], [1.0], [1.5], [3.0]], stop_gradient=False)
    label = paddle.to_tensor([0, 0, 1, 1])
    # per anchor (hardest pos, hardest neg): (1, 1.5), (1, 0.5), (1.5, 0.5), (1.5, 2)
    gaps = np.array([1 - 1.5, 1 - 0.5, 1.5 - 0.5, 1.5 - 2])
    loss = TripletLoss(margin=1.0)({"features": x}, label)
    assert math.isclose(float(loss), np.maximum(gaps + 1.0, 0).mean(), rel_tol=1e-5)  # 1.125
    loss.backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    soft = TripletLoss(soft_margin=True)({"features": x}, label)
    assert math.isclose(float(soft), np.log1p(np.exp(gaps)).mean(), rel_tol=1e-5)
    # margin large enough to be satisfied -> zero; one identity only -> zero, not NaN
    spread = paddle.to_tensor([[0.0], [0.1], [5.0], [5.1]])
    assert float(TripletLoss(margin=1.0)({"features": spread}, label)) == 0.0
    assert float(TripletLoss()({"features": x}, paddle.to_tensor([3, 3, 3, 3]))) == 0.0


def test_triplet_v2_normalises_and_builds_from_config():
    loss = build_loss([{"TripletLossV2": {"weight": 0.5, "margin": 0.3, "feature_from": "features"}}], "Loss.Train")
    feats = paddle.to_tensor([[1.0, 0.0], [10.0, 1.0], [0.0, 1.0], [0.0, 7.0]])
    value = float(loss({"features": feats}, paddle.to_tensor([0, 0, 1, 1]))["loss"])
    expected = 0.5 * float(TripletLoss(margin=0.3)({"features": paddle.nn.functional.normalize(feats)},
                                                   paddle.to_tensor([0, 0, 1, 1])))
    assert math.isclose(value, expected, rel_tol=1e-5)
    assert TripletLossV2().feat_from == "features"  # PaddleClas default (its re-id configs pass "backbone")
    assert TripletLossV2(feature_from="backbone").feat_from == TripletLossV2(feat_from="backbone").feat_from
    with pytest.raises(ConfigError) as e:
        build_loss([{"TripletLoss": {"margn": 1.0}}], "Loss.Train")
    assert e.value.key == "Loss.Train.0.TripletLoss.margn"


# ----------------------------------------------------------------------------- P x K sampler
class Labelled:
    labels = [0] * 5 + [1] * 3 + [2] * 10 + [3] * 1 + [4] * 4

    def __len__(self):
        return len(self.labels)


def test_pk_sampler_composition_coverage_and_determinism():
    sampler = PKSampler(Labelled(), batch_size=6, sample_per_id=2, seed=3)
    for epoch in range(4):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        for batch in batches:
            ids = [Labelled.labels[i] for i in batch]
            assert len(batch) == 6 and all(n == 2 for n in Counter(ids).values()) and len(set(ids)) == 3
        seen = {i for b in batches for i in b}
        assert seen == set(range(len(Labelled.labels))), f"epoch {epoch} missed {set(range(23)) - seen}"
        assert sum(Labelled.labels[i] == 3 for b in batches for i in b) >= 2  # 1 image, K=2: repeated
    sampler.set_epoch(1)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) == first
    sampler.set_epoch(2)
    assert list(sampler) != first
    assert list(PKSampler(Labelled(), 6, 2, seed=4)) != list(PKSampler(Labelled(), 6, 2, seed=3))


def test_pk_sampler_ranks_alias_and_errors():
    ranks = [PKSampler(Labelled(), 4, 2, seed=1, num_replicas=2, rank=r) for r in (0, 1)]
    parts = [list(s) for s in ranks]
    assert len(parts[0]) == len(parts[1]) == len(ranks[0])
    assert {i for p in parts for b in p for i in b} == set(range(len(Labelled.labels)))
    alias = DistributedRandomIdentitySampler(Labelled(), batch_size=4, num_instances=2, seed=1)
    assert list(alias) == list(PKSampler(Labelled(), 4, 2, seed=1))
    small = PKSampler(Labelled(), 8, 2, drop_last=False, seed=0)
    assert {i for b in small for i in b} == set(range(len(Labelled.labels)))
    for kwargs, key in (({"batch_size": 6, "sample_per_id": 4}, "sample_per_id"),
                        ({"batch_size": 12, "sample_per_id": 2}, "batch_size"),  # 6 ids per batch, 5 exist
                        ({"batch_size": 4, "sample_per_id": 2, "sample_method": "id_avg"}, "sample_method")):
        with pytest.raises(ConfigError) as e:
            PKSampler(Labelled(), **kwargs)
        assert e.value.key == key
    with pytest.raises(ConfigError) as e:
        DistributedRandomIdentitySampler(Labelled(), batch_size=6, num_instances=4)
    assert e.value.key == "num_instances"


# ----------------------------------------------------------------------------- retrieval eval
class FakeEngine:
    """What eval_retrieval reads from an Engine: config, glob, model, seed."""

    def __init__(self, config, model):
        self.config, self.glob, self.model, self.seed = config, config["Global"], model, 0


def eval_model():
    paddle.seed(0)
    model = build_model(rec_arch("ArcMargin", class_num=8, margin=0.2, scale=30.0))
    model.eval()
    return model


def test_eval_retrieval_metrics_and_self_exclusion(demo_root):
    config = {"Global": {"eval_mode": "retrieval"}, "DataLoader": {"Eval": eval_section(demo_root)},
              "Metric": {"Eval": [{"Recallk": {"topk": [1, 5]}}, {"mAP": {}}]}}
    model = eval_model()
    with paddle.no_grad():
        metrics = eval_retrieval(FakeEngine(config, model))
    assert list(metrics) == ["recall1", "recall5", "mAP"]
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert metrics["recall1"] <= metrics["recall5"]

    # Query == Gallery: every image is excluded from its own ranking
    same = copy.deepcopy(config)
    same["DataLoader"]["Eval"] = eval_section(demo_root, "val_list.txt", "val_list.txt")
    engine = FakeEngine(same, model)
    with paddle.no_grad():
        metrics = eval_retrieval(engine)
        feats = embed_dataset(engine, "Query")
    expected = recall_at_k(feats.features, feats.labels, feats.features, feats.labels, (1, 5), exclude_self=True)
    assert math.isclose(metrics["recall1"], expected["recall1"]) and metrics["recall5"] == expected["recall5"]
    with_self = recall_at_k(feats.features, feats.labels, feats.features, feats.labels, (1,))
    assert with_self["recall1"] == 1.0 and metrics["recall1"] < 1.0


def test_eval_retrieval_config_errors(demo_root):
    base = {"Global": {}, "DataLoader": {"Eval": eval_section(demo_root)},
            "Metric": {"Eval": [{"Recallk": {"topk": [1]}}]}}
    model = eval_model()
    cases = []
    no_query = copy.deepcopy(base)
    del no_query["DataLoader"]["Eval"]["Query"]
    cases.append((no_query, "DataLoader.Eval.Query"))
    no_metric = copy.deepcopy(base)
    no_metric["Metric"]["Eval"] = []
    cases.append((no_metric, "Metric.Eval"))
    topk_acc = copy.deepcopy(base)
    topk_acc["Metric"]["Eval"] = [{"TopkAcc": {"topk": [1]}}]
    cases.append((topk_acc, "Metric.Eval.0.TopkAcc"))
    bad_key = copy.deepcopy(base)
    bad_key["Global"]["retrieval_feature_from"] = "embedding"
    cases.append((bad_key, "Global.retrieval_feature_from"))
    for config, key in cases:
        with pytest.raises(ConfigError) as e, paddle.no_grad():
            eval_retrieval(FakeEngine(config, model))
        assert e.value.key == key, (key, str(e.value))


# ----------------------------------------------------------------------------- end to end
def test_train_retrieval_end_to_end_with_frozen_backbone(demo_root, tmp_path):
    from ppfreeze.engine import Engine
    out_dir = str(tmp_path / "out")
    sampler = {"name": "DistributedRandomIdentitySampler", "batch_size": 8, "num_instances": 2}
    config = {
        "Global": {"output_dir": out_dir, "device": "cpu", "epochs": 2, "eval_during_train": True,
                   "eval_interval": 1, "save_interval": 1, "print_batch_step": 1, "use_visualdl": False,
                   "image_shape": [3, 32, 32], "seed": 5, "eval_mode": "retrieval", "max_train_steps": 2},
        "Arch": rec_arch("ArcMargin", class_num=8, margin=0.2, scale=30.0),
        "Freeze": {"rules": [{"select": ["stem", "blocks2", "blocks3"]}], "bn": "frozen", "verify": "epoch",
                   "allow_random_frozen": True},
        "Loss": {"Train": [{"CELoss": {"weight": 1.0}},
                           {"TripletLossV2": {"weight": 1.0, "feature_from": "features"}}]},
        "Optimizer": {"name": "Momentum", "momentum": 0.9, "lr": {"name": "Cosine", "learning_rate": 0.05}},
        "DataLoader": {"Train": loader_section(demo_root, "rec_train_list.txt", TRAIN_OPS, sampler),
                       "Eval": eval_section(demo_root)},
        "Metric": {"Train": [{"TopkAcc": {"topk": [1, 5]}}], "Eval": [{"Recallk": {"topk": [1, 5]}}, {"mAP": {}}]},
    }
    engine = Engine(config, "train")
    assert engine.model.needs_label
    result = engine.train()
    assert result["metric_key"] == "recall1" and 0.0 <= result["best_metric"] <= 1.0
    run_dir = os.path.join(out_dir, "RecModel")
    assert os.path.isfile(os.path.join(run_dir, "best_model.pdparams"))
    first = paddle.load(os.path.join(run_dir, "epoch_1.pdparams"))
    second = paddle.load(os.path.join(run_dir, "epoch_2.pdparams"))
    for name in ("backbone.conv1.conv.weight", "backbone.blocks3.1.pw_conv.conv.weight",
                 "backbone.blocks3.1.pw_conv.bn._mean"):
        assert np.array_equal(first[name].numpy(), second[name].numpy()), name  # frozen
    for name in ("backbone.blocks5.0.pw_conv.conv.weight", "neck.fc.weight", "head.weight"):
        assert not np.array_equal(first[name].numpy(), second[name].numpy()), name  # trained

    # deploy: export the best model, build a gallery, search it, append to it, prune it
    from ppfreeze.export.exporter import export_model
    export_cfg = copy.deepcopy(config)
    export_cfg["Global"]["pretrained_model"] = os.path.join(run_dir, "best_model")
    export_cfg["Infer"] = {"transforms": EVAL_OPS}
    export_cfg["Arch"]["infer_output_key"] = "features"
    export_model(export_cfg, str(tmp_path / "inference"))
    deploy_gallery_round_trip(demo_root, str(tmp_path / "inference"), tmp_path)


def deploy_gallery_round_trip(demo_root, model_dir, tmp_path):
    build_gallery, predict_rec = load_deploy("build_gallery"), load_deploy("predict_rec")
    index_dir = str(tmp_path / "index")
    gallery_file = os.path.join(demo_root, "gallery_label.txt")
    base = ["-o", f"Global.rec_inference_model_dir={model_dir}", "-o", f"IndexProcess.index_dir={index_dir}",
            "-o", f"IndexProcess.image_root={demo_root}", "-o", "IndexProcess.index_method=Flat",
            "-o", "Global.cpu_num_threads=1"]
    build = ["-c", os.path.join(ROOT, "deploy", "configs", "build_gallery.yaml"), *base,
             "-o", "IndexProcess.embedding_size=16"]
    assert build_gallery.main(build + ["-o", f"IndexProcess.data_file={gallery_file}"]) == 0
    with open(gallery_file) as f:
        lines = [line for line in f.read().splitlines() if line]
    with open(os.path.join(index_dir, "manifest.json")) as f:
        assert json.load(f)["count"] == len(lines)

    query = next(line.split("\t")[0] for line in lines)
    results_file = str(tmp_path / "results.jsonl")
    predict = ["-c", os.path.join(ROOT, "deploy", "configs", "inference_rec.yaml"), *base[:2], *base[2:4],
               "-o", f"Global.infer_imgs={os.path.join(demo_root, query)}", "-o", "IndexProcess.score_thres=null",
               "-o", f"Global.save_results={results_file}"]
    assert predict_rec.main(predict) == 0
    with open(results_file) as f:
        top = json.loads(f.readline())["results"]   # JSON Lines
    # the query is itself in the gallery: best match, cosine 1
    assert top[0]["label"] == lines[0].split("\t")[1] and top[0]["score"] > 0.999 and len(top) == 5

    extra = tmp_path / "extra.txt"
    extra.write_text(lines[0].split("\t")[0] + "\tnew_item\n")
    assert build_gallery.main(build + ["-o", f"IndexProcess.data_file={extra}",
                                       "-o", "IndexProcess.index_operation=append"]) == 0
    assert build_gallery.main(build + ["-o", f"IndexProcess.data_file={extra}",
                                       "-o", "IndexProcess.index_operation=remove"]) == 0
    with open(os.path.join(index_dir, "manifest.json")) as f:
        assert json.load(f)["count"] == len(lines)
    broken = tmp_path / "broken.txt"
    broken.write_text(lines[0].replace("\t", " ") + "\n")  # spaces instead of a TAB
    assert build_gallery.main(build + ["-o", f"IndexProcess.data_file={broken}"]) == 2


def test_shipped_retrieval_configs_load_and_quick_start_builds():
    from ppfreeze.config import load_config
    expected = {"quick_start_rec_pretrain": "classification", "quick_start_rec": "retrieval",
                "GeneralRecognition_PPLCNet_x2_5": "retrieval"}
    for name, mode in expected.items():
        cfg = load_config(os.path.join(ROOT, "configs", "retrieval", f"{name}.yaml"))
        assert cfg["Global"].get("eval_mode", "classification") == mode, name
    cfg = load_config(os.path.join(ROOT, "configs", "retrieval", "quick_start_rec.yaml"))
    assert cfg["Arch"]["Backbone"]["pretrained"].startswith("./output/rec_pretrain/")  # written by step 1
    arch = {**cfg["Arch"], "Backbone": {"name": cfg["Arch"]["Backbone"]["name"]}}
    model = build_model(arch)
    plan = build_freeze_plan(cfg["Freeze"], model)
    frozen = plan.frozen_tensor_names(1)
    assert any(n.startswith("backbone.blocks.5.") for n in frozen)  # stage3 of ResNet18
    assert not any(n.startswith("backbone.blocks.6.") for n in frozen)  # stage4 trains
    assert model.needs_label and cfg["Metric"]["Eval"][0] == {"Recallk": {"topk": [1, 5]}}
