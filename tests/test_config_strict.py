"""The smaller configuration faults of issue 12: each is one clear ConfigError, not a traceback
and not a silent default."""
import os
import stat

import paddle
import pytest
import yaml

from ppfreeze.config import ConfigError, load_config
from ppfreeze.config.loader import apply_overrides, yaml_load
from ppfreeze.config.schema import validate_config
from ppfreeze.utils.io import staged_directory
from _scripts import load_tool


def _minimal(**sections):
    cfg = {"Global": {"device": "cpu"}, "Arch": {"name": "ResNet18", "class_num": 4}}
    cfg.update(sections)
    return cfg


def _error(cfg):
    with pytest.raises(ConfigError) as e:
        validate_config(cfg, source="cfg.yaml")
    return e.value


# ----------------------------------------------------------------------------- Global values
@pytest.mark.parametrize("key,value", [("seed", -1), ("seed", 2 ** 63), ("max_train_steps", 0),
                                       ("max_train_steps", -3), ("max_eval_steps", 0), ("class_num", 0),
                                       ("class_num", 3_000_000_000)])
def test_out_of_range_global_values_are_refused(key, value):
    error = _error(_minimal(Global={"device": "cpu", key: value}))
    assert error.key == f"Global.{key}" and str(value) in str(error)


@pytest.mark.parametrize("key,value", [("seed", 0), ("seed", 2 ** 32), ("seed", None), ("max_train_steps", None),
                                       ("max_train_steps", 1), ("class_num", 1000)])
def test_in_range_global_values_are_accepted(key, value):
    validate_config(_minimal(Global={"device": "cpu", key: value}))


def test_max_train_steps_zero_no_longer_means_no_limit():
    error = _error(_minimal(Global={"device": "cpu", "max_train_steps": 0}))
    assert "null (the default) means no limit" in str(error)


@pytest.mark.parametrize("value", [3e9, 3_000_000_000, "3e9"])
def test_arch_class_num_beyond_int32_is_a_config_error(value):
    from ppfreeze.arch import build_model
    with pytest.raises(ConfigError) as e:
        build_model({"name": "ResNet18", "class_num": value})
    assert e.value.key == "Arch.class_num" and "2**31-1" in str(e.value)


@pytest.mark.parametrize("opt", [{"name": "Momentum", "momentum": 0.9, "weight_decay": -1e-4},
                                 {"name": "AdamW", "weight_decay": "-0.05"},
                                 {"name": "Momentum", "momentum": 0.9, "regularizer": {"name": "L2", "coeff": -1e-4}},
                                 {"name": "SGD", "regularizer": {"name": "L1", "coeff": -1}}])
def test_negative_weight_decay_is_refused(opt):
    from ppfreeze.optim import build_optimizer
    layer = paddle.nn.Linear(2, 2)
    with pytest.raises(ConfigError) as e:
        build_optimizer({**opt, "lr": {"name": "Constant", "learning_rate": 0.1}}, list(layer.named_parameters()), 1, 1)
    assert e.value.key in ("Optimizer.weight_decay", "Optimizer.regularizer.coeff") and "must be >= 0" in str(e.value)


def test_a_config_without_dataloader_section_is_a_config_error_for_training(tmp_path):
    tool = load_tool("train")
    cfg = _minimal(Loss={"Train": [{"CELoss": {"weight": 1.0}}]},
                   Optimizer={"name": "Momentum", "momentum": 0.9, "lr": {"name": "Constant", "learning_rate": 0.1}})
    cfg["Global"].update({"output_dir": str(tmp_path / "out"), "image_shape": [3, 32, 32]})
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    from ppfreeze.data.loader import build_dataloader
    with pytest.raises(ConfigError) as e:
        build_dataloader(None, "Train")
    assert e.value.key == "DataLoader" and "missing" in str(e.value)
    assert tool.main(["-c", str(tmp_path / "cfg.yaml")]) == 2


# ----------------------------------------------------------------------------- unknown keys
@pytest.mark.parametrize("section,value,key,suggestion", [
    ("Loss", {"Train": [], "Evall": []}, "Loss.Evall", "Eval"),
    ("Metric", {"Train": [], "eval": []}, "Metric.eval", "Eval"),
    ("DataLoader", {"Trian": {}}, "DataLoader.Trian", "Train"),
    ("DataLoader", {"Train": {"dataset": {}, "samplr": {}}}, "DataLoader.Train.samplr", "sampler"),
    ("DataLoader", {"Eval": {"dataset": {}, "loaders": {}}}, "DataLoader.Eval.loaders", "loader"),
    ("DataLoader", {"Eval": {"Query": {"dataset": {}}, "Galery": {}}}, "DataLoader.Eval.Galery", "Gallery"),
    ("DataLoader", {"Eval": {"Query": {"datset": {}}, "Gallery": {}}}, "DataLoader.Eval.Query.datset", "dataset"),
    ("Infer", {"infer_imgs": "a.jpg", "batchsize": 1}, "Infer.batchsize", "batch_size"),
])
def test_unknown_keys_in_component_sections_are_errors_with_did_you_mean(section, value, key, suggestion):
    error = _error(_minimal(**{section: value}))
    assert error.key == key and f"Did you mean: {suggestion}" in str(error) and "cfg.yaml" in str(error)


@pytest.mark.parametrize("key", ["Loss.MetaTrain", "DataLoader.Metalearning"])
def test_paddleclas_keys_of_unimplemented_features_are_refused_with_the_reason(key):
    section, name = key.split(".")
    error = _error(_minimal(**{section: {name: {}}}))
    assert error.key == key and "not implemented" in str(error)


def test_unlabeled_images_without_a_semi_supervised_trainer_are_refused():
    error = _error(_minimal(DataLoader={"UnLabelTrain": {}}))
    assert error.key == "DataLoader.UnLabelTrain" and "Global.train_mode: fixmatch" in str(error)


def test_paddleclas_section_keys_are_accepted():
    loader = {"dataset": {"name": "ImageNetDataset"}, "sampler": {"name": "DistributedBatchSampler"},
              "loader": {"num_workers": 4, "use_shared_memory": True}}
    validate_config(_minimal(
        Loss={"Train": [{"CELoss": {"weight": 1.0}}], "Eval": [{"CELoss": {"weight": 1.0}}]},
        Metric={"Train": [{"TopkAcc": {"topk": [1, 5]}}], "Eval": [{"TopkAcc": {"topk": [1, 5]}}]},
        DataLoader={"Train": loader, "Eval": {"Query": loader, "Gallery": loader}},
        Infer={"infer_imgs": "a.jpg", "batch_size": 10, "transforms": [], "PostProcess": {"name": "Topk"}}))


@pytest.mark.parametrize("section", ["Loss", "Metric", "DataLoader", "Infer"])
def test_component_sections_must_be_mappings(section):
    assert _error(_minimal(**{section: [1, 2]})).key == section


# ----------------------------------------------------------------------------- YAML and text files
def test_duplicate_yaml_keys_name_the_file_and_both_lines(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("Global:\n  epochs: 3\n  device: cpu\n  epochs: 5\nArch:\n  name: ResNet18\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(path))
    message = str(e.value)
    assert "dup.yaml, line 4" in message and "duplicate key 'epochs'" in message and "line 2" in message
    path.write_text("Global: {device: cpu}\nArch: {name: ResNet18}\nGlobal: {epochs: 2}\n")
    with pytest.raises(ConfigError, match=r"line 3.*duplicate key 'Global'"):
        load_config(str(path))


def test_merge_keys_may_be_overridden_and_overrides_keep_yaml_values():
    data = yaml_load("base: &b {a: 1, b: 2}\nderived:\n  <<: *b\n  b: 3\n")
    assert data["derived"] == {"a": 1, "b": 3}
    # an override value with a duplicate key is not valid YAML: it stays the raw string, as before
    assert apply_overrides({"Global": {}}, ["Global.x={a: 1, a: 2}"])["Global"]["x"] == "{a: 1, a: 2}"


def test_bom_config_and_list_files_are_accepted_and_non_utf8_is_located(tmp_path):
    config = tmp_path / "bom.yaml"
    config.write_bytes("\ufeffGlobal: {device: cpu}\nArch: {name: ResNet18}\n".encode("utf-8"))
    assert load_config(str(config))["Global"]["device"] == "cpu"
    config.write_bytes("Global: {device: cpu}\n# caf\xe9\nArch: {name: ResNet18}\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"bom.yaml:2: not UTF-8 text \(byte 0xe9 at column 6\)"):
        load_config(str(config))

    from ppfreeze.data.dataset import read_label_file
    from ppfreeze.retrieval import read_gallery_file
    from ppfreeze.utils.images import list_images
    (tmp_path / "a.jpg").write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_bytes("\ufeffa.jpg 3\r\na.jpg 4\n".encode("utf-8"))
    samples = read_label_file(str(listing), str(tmp_path))
    assert [s.path for s in samples] == [str(tmp_path / "a.jpg")] * 2 and samples[1].line_no == 2
    assert list_images(str(listing)) == [str(tmp_path / "a.jpg")] * 2
    listing.write_bytes("a.jpg 3\n\n\xe4\xb8\xad.jpg 4\n".encode("utf-8") + "b\xe4.jpg 5\n".encode("latin-1"))
    with pytest.raises(ConfigError) as e:
        read_label_file(str(listing), str(tmp_path))
    assert e.value.key == "cls_label_path" and f"{listing}:4: not UTF-8" in str(e.value)
    with pytest.raises(ConfigError, match=r"list.txt:4: not UTF-8"):
        read_gallery_file(str(listing), str(tmp_path), check_images=False)
    with pytest.raises(ConfigError, match=r"list.txt:4: not UTF-8"):
        list_images(str(listing))


# ----------------------------------------------------------------------------- directories
def test_staged_directories_get_ordinary_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        target = tmp_path / "inference"
        with staged_directory(str(target)) as staging:
            with open(os.path.join(staging, "inference.json"), "w") as f:
                f.write("{}")
        assert stat.S_IMODE(os.stat(target).st_mode) == 0o755   # mkdtemp alone would leave 0700
        assert stat.S_IMODE(os.stat(target / "inference.json").st_mode) == 0o644
    finally:
        os.umask(umask)
