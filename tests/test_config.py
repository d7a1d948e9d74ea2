"""Config loading: -o grammar, _BASE_ inheritance, expressions, validation errors."""
import os

import pytest
import yaml

from ppfreeze.config import ConfigError, apply_overrides, load_config, parse_override
from ppfreeze.config.expr import to_number
from ppfreeze.utils.builder import Registry


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return str(path)


BASE = {"Global": {"epochs": 3, "device": "cpu", "output_dir": "out"},
        "Arch": {"name": "ResNet18", "class_num": 10},
        "DataLoader": {"Train": {"dataset": {"name": "ImageNetDataset", "transform_ops": [
            {"DecodeImage": {"to_rgb": True}}, {"RandCropImage": {"size": 224}}, {"ToCHWImage": None}]}}}}


@pytest.mark.parametrize("text,parts,value", [
    ("Global.epochs=5", ["Global", "epochs"], 5),
    ("Global.pretrained_model=null", ["Global", "pretrained_model"], None),
    ("Global.checkpoints=a=b", ["Global", "checkpoints"], "a=b"),
    ("Global.image_shape=[3,32,32]", ["Global", "image_shape"], [3, 32, 32]),
    ("Global.eval_during_train=False", ["Global", "eval_during_train"], False),
    ("Optimizer.lr.learning_rate=1e-3", ["Optimizer", "lr", "learning_rate"], 1e-3),
    ("Global.output_dir=", ["Global", "output_dir"], ""),
])
def test_parse_override_values_are_yaml(text, parts, value):
    assert parse_override(text) == (parts, value)


def test_override_list_index_and_one_key_op():
    cfg = yaml.safe_load(yaml.safe_dump(BASE))
    apply_overrides(cfg, ["DataLoader.Train.dataset.transform_ops.1.RandCropImage.size=32",
                          "DataLoader.Train.dataset.transform_ops.2.ToCHWImage.x=1"])
    ops = cfg["DataLoader"]["Train"]["dataset"]["transform_ops"]
    assert ops[1] == {"RandCropImage": {"size": 32}}
    assert ops[2] == {"ToCHWImage": {"x": 1}}


@pytest.mark.parametrize("text,fragment", [
    ("Global.epochs", "has no '='"),
    ("DataLoader.Train.dataset.transform_ops.7.RandCropImage.size=1", "index 7 out of range"),
    ("DataLoader.Train.dataset.transform_ops.x.size=1", "is a list"),
    ("Global.epochs.x=1", "has no key 'x'"),
    ("Global..epochs=1", "empty key part"),
])
def test_override_errors_name_the_problem(text, fragment):
    cfg = yaml.safe_load(yaml.safe_dump(BASE))
    with pytest.raises(ConfigError, match=fragment):
        apply_overrides(cfg, [text])


def test_base_inheritance_merges_recursively(tmp_path):
    write(tmp_path, "base.yaml", BASE)
    os.makedirs(tmp_path / "sub")
    child = write(tmp_path, "sub/child.yaml", {"_BASE_": "../base.yaml", "Global": {"epochs": 7},
                                               "Arch": {"class_num": 4}})
    cfg = load_config(child, ["Global.device=cpu"])
    assert cfg["Global"] == {"epochs": 7, "device": "cpu", "output_dir": "out"}
    assert cfg["Arch"] == {"name": "ResNet18", "class_num": 4}


def test_base_delete_replaces_instead_of_merging(tmp_path):
    write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "child.yaml", {"_BASE_": "base.yaml", "Arch": {"_delete_": True, "name": "ResNet50"}})
    assert load_config(child)["Arch"] == {"name": "ResNet50"}


def test_missing_base_and_cycle(tmp_path):
    child = write(tmp_path, "child.yaml", {"_BASE_": "nope.yaml", "Global": {}})
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(child)
    a = write(tmp_path, "a.yaml", {"_BASE_": "b.yaml"})
    write(tmp_path, "b.yaml", {"_BASE_": "a.yaml"})
    with pytest.raises(ConfigError, match="circular"):
        load_config(a)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, "bad.yaml", "Global:\n  epochs: 3\n device: cpu\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "bad.yaml, line 3" in str(e.value)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nonexistent/x.yaml")


def test_unknown_section_and_global_key_suggest(tmp_path):
    path = write(tmp_path, "c.yaml", dict(BASE, Optimzer={"name": "SGD"}))
    with pytest.raises(ConfigError, match="Did you mean: Optimizer"):
        load_config(path)
    path = write(tmp_path, "c2.yaml", BASE)
    with pytest.raises(ConfigError, match="Did you mean: epochs"):
        load_config(path, ["Global.epoch=3"])


@pytest.mark.parametrize("override,fragment", [
    ("Global.epochs=three", "expected int"),
    ("Global.device=tpu", "expected cpu, gpu or auto"),
    ("Global.image_shape=[3,32]", r"\[C, H, W\]"),
    ("Global.epochs=0", ">= 1"),
])
def test_wrong_types(tmp_path, override, fragment):
    path = write(tmp_path, "c.yaml", BASE)
    with pytest.raises(ConfigError, match=fragment):
        load_config(path, [override])


@pytest.mark.parametrize("text,value", [("1.0/255.0", 1.0 / 255.0), ("1./255.", 1.0 / 255.0), ("2**3", 8), (0.5, 0.5)])
def test_expressions(text, value):
    assert to_number(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["__import__('os')", "a/2", True])
def test_expressions_reject_code(text):
    with pytest.raises(ConfigError):
        to_number(text, "x.scale")


def test_builder_both_spellings_and_errors():
    reg = Registry("thing")

    @reg.register
    class Scale:
        def __init__(self, factor: float = 1.0):
            self.factor = factor

    assert reg.build({"name": "Scale", "factor": 2.0}, "A").factor == 2.0
    assert reg.build({"Scale": {"factor": 3.0}}, "A").factor == 3.0
    assert reg.build({"Scale": None}, "A").factor == 1.0
    with pytest.raises(ConfigError, match="Did you mean: Scale"):
        reg.build({"name": "Scael"}, "A")
    with pytest.raises(ConfigError, match=r"A\.factr.*Did you mean: factor"):
        reg.build({"name": "Scale", "factr": 1}, "A")
