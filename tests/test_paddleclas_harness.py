"""tools/dev/run_paddleclas_configs.py: the overrides it may apply to PaddleClas's files, and no others."""
from _scripts import load_script


def _harness():
    return load_script("tools/dev/run_paddleclas_configs.py", "harness")


CONFIG = {
    "Global": {"epochs": 120, "image_shape": [3, 224, 224], "pretrained_model": "https://x/y.pdparams"},
    "Loss": {"Train": [{"CELoss": {"weight": 1.0}}]}, "Optimizer": {"name": "Momentum"},
    "Arch": {"name": "RecModel", "Backbone": {"name": "ResNet50", "pretrained": True},
             "Head": {"name": "ArcMargin", "class_num": 185341}},
    "DataLoader": {
        "Train": {"dataset": {"name": "ImageNetDataset", "image_root": "./d/", "cls_label_path": "./d/t.txt",
                              "transform_ops": [{"DecodeImage": {"to_rgb": True}}, {"RandCropImage": {"size": 224}}]},
                  "sampler": {"name": "PKSampler", "batch_size": 256, "sample_per_id": 4},
                  "loader": {"num_workers": 8}},
        "Eval": {"Query": {"dataset": {"name": "VeriWild", "image_root": "./v/", "cls_label_path": "./v/q.txt",
                                       "transform_ops": [{"ResizeImage": {"resize_short": 256}}]},
                           "sampler": {"batch_size": 64}}}},
}


def test_overrides_are_the_allowed_kinds_only(tmp_path):
    h = _harness()
    assert h.classify_scope(CONFIG, {"RecModel", "ResNet50"}) == ("in", [])
    assert h.classify_scope(CONFIG, {"ResNet50"}) == ("wrapper", ["RecModel"])
    assert h.classify_scope({**CONFIG, "Optimizer": None}, {"RecModel", "ResNet50"}) == ("no_train", ["Optimizer"])
    overrides, notes = h.build_overrides(CONFIG, h.TinyData(str(tmp_path)), str(tmp_path), 64, {"ResNet50"})
    keys = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in overrides}
    allowed_prefixes = ("Global.device", "Global.epochs", "Global.max_train_steps", "Global.output_dir",
                        "Global.eval_during_train", "Global.eval_interval", "Global.start_eval_epoch",
                        "Global.max_eval_steps", "Global.image_shape", "Global.pretrained_model",
                        "Arch.Backbone.pretrained", "Arch.Head.class_num")
    for key in keys:
        assert key.startswith(allowed_prefixes) or key.split(".")[-1] in (
            "image_root", "cls_label_path", "size", "resize_short", "batch_size", "sample_per_id", "num_workers"), key
    assert keys["Global.image_shape"] == "[3, 64, 64]"
    assert keys["DataLoader.Train.dataset.transform_ops.1.RandCropImage.size"] == "64"
    assert keys["DataLoader.Eval.Query.dataset.transform_ops.0.ResizeImage.resize_short"] == "73"
    assert keys["DataLoader.Train.sampler.sample_per_id"] == "2" and keys["DataLoader.Train.sampler.batch_size"] == "4"
    assert keys["Arch.Head.class_num"] == "10" and keys["Arch.Backbone.pretrained"] == "false"
    assert keys["Global.pretrained_model"] == "null" and len(notes) == 2
    with open(keys["DataLoader.Eval.Query.dataset.cls_label_path"].strip('"')) as f:
        assert len(f.readline().split()) == 3   # VeriWild lists: path label camera
