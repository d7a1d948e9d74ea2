"""Shared fixtures: a tiny demo dataset and a tiny training config (32 px, few images)."""
import copy
import os
import sys

import pytest
import yaml

os.environ.setdefault("OMP_NUM_THREADS", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    from make_demo_data import make_demo_dataset
    root = str(tmp_path_factory.mktemp("data") / "ppfreeze_demo")
    make_demo_dataset(root, train_per_class=4, val_per_class=2)
    return root


def tiny_config(demo_root: str, output_dir: str, arch: str = "ResNet18", epochs: int = 2) -> dict:
    """A complete classification config small enough for a unit test."""
    ops_train = [{"DecodeImage": {"to_rgb": True, "channel_first": False}},
                 {"RandCropImage": {"size": 32}}, {"RandFlipImage": {"flip_code": 1}},
                 {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.485, 0.456, 0.406],
                                     "std": [0.229, 0.224, 0.225], "order": ""}}]
    ops_eval = [{"DecodeImage": {"to_rgb": True, "channel_first": False}},
                {"ResizeImage": {"resize_short": 36}}, {"CropImage": {"size": 32}},
                {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.485, 0.456, 0.406],
                                    "std": [0.229, 0.224, 0.225], "order": ""}}]

    def loader(split, ops, shuffle):
        return {"dataset": {"name": "ImageNetDataset", "image_root": demo_root,
                            "cls_label_path": os.path.join(demo_root, f"{split}_list.txt"), "transform_ops": ops},
                "sampler": {"name": "DistributedBatchSampler", "batch_size": 8, "drop_last": False,
                            "shuffle": shuffle},
                "loader": {"num_workers": 0, "use_shared_memory": False}}

    return copy.deepcopy({
        "Global": {"checkpoints": None, "pretrained_model": None, "output_dir": output_dir, "device": "cpu",
                   "save_interval": 1, "eval_during_train": True, "eval_interval": 1, "epochs": epochs,
                   "print_batch_step": 2, "use_visualdl": False, "image_shape": [3, 32, 32], "seed": 7},
        "Arch": {"name": arch, "class_num": 12},
        "Loss": {"Train": [{"CELoss": {"weight": 1.0, "epsilon": 0.1}}], "Eval": [{"CELoss": {"weight": 1.0}}]},
        "Optimizer": {"name": "Momentum", "momentum": 0.9,
                      "lr": {"name": "Cosine", "learning_rate": 0.05, "warmup_epoch": 1},
                      "regularizer": {"name": "L2", "coeff": 1e-4}},
        "DataLoader": {"Train": loader("train", ops_train, True), "Eval": loader("val", ops_eval, False)},
        "Metric": {"Train": [{"TopkAcc": {"topk": [1, 5]}}], "Eval": [{"TopkAcc": {"topk": [1, 5]}}]},
    })


@pytest.fixture
def make_config(demo_root, tmp_path):
    """Factory: ``make_config(**overrides_of_Global)`` -> (config dict, yaml path)."""
    def _make(arch="ResNet18", epochs=2, name="cfg.yaml", **glob):
        cfg = tiny_config(demo_root, str(tmp_path / "output"), arch, epochs)
        cfg["Global"].update(glob)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(cfg))
        return cfg, str(path)
    return _make


@pytest.fixture(autouse=True)
def _caplog_sees_ppfreeze(caplog):
    """The 'ppfreeze' logger does not propagate once the engine set it up; let caplog see it."""
    import logging
    logger = logging.getLogger("ppfreeze")
    logger.addHandler(caplog.handler)
    yield
    logger.removeHandler(caplog.handler)
