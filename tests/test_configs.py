"""Every shipped config loads, validates and resolves its Freeze plan; a PaddleClas config trains."""
import glob
import os

import pytest

from _scripts import load_tool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True))


def train_tool():
    return load_tool("train")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, ROOT))
def test_shipped_config_dry_run(path, tmp_path, capsys):
    overrides = ["-o", "Global.pretrained_model=null", "-o", f"Global.output_dir={tmp_path}", "-o", "Global.device=cpu"]
    if "Backbone" in open(path).read():
        overrides += ["-o", "Arch.Backbone.pretrained=False"]
    if "DistillationModel" in open(path).read():  # the teacher comes from the quick start's output
        overrides += ["-o", "Arch.models.0.Teacher.pretrained=False"]
    assert train_tool().main(["-c", path, "--freeze-report"] + overrides) == 0, capsys.readouterr().err
    assert "Freeze plan" in capsys.readouterr().out


def test_paddleclas_imagenet_config_runs_with_only_data_overrides(demo_root, tmp_path):
    """PaddleClas's ResNet18.yaml as shipped, with -o for data paths, class_num, device, epochs, batch size."""
    path = os.path.join(ROOT, "configs", "ImageNet", "ResNet", "ResNet18.yaml")
    o = []
    for split, mode in (("train", "Train"), ("val", "Eval")):
        o += ["-o", f"DataLoader.{mode}.dataset.image_root={demo_root}",
              "-o", f"DataLoader.{mode}.dataset.cls_label_path={demo_root}/{split}_list.txt",
              "-o", f"DataLoader.{mode}.sampler.batch_size=16", "-o", f"DataLoader.{mode}.loader.num_workers=0"]
    o += ["-o", "Arch.class_num=12", "-o", "Global.device=cpu", "-o", "Global.epochs=1",
          "-o", f"Global.output_dir={tmp_path}"]
    assert train_tool().main(["-c", path] + o) == 0
    assert os.path.isfile(os.path.join(str(tmp_path), "ResNet18", "best_model.pdparams"))
