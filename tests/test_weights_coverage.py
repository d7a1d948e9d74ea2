"""Weights that cover too little of the model: an error for eval / infer / export, a warning in training."""
import os

import numpy as np
import paddle
import pytest

from ppfreeze.arch import build_model
from ppfreeze.config import ConfigError, load_config
from ppfreeze.engine import Engine
from test_engine import load_tool


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Weights of ResNet18 (12 classes), the same with another class_num, and a foreign file in which
    exactly one tensor fits ResNet18 (the stem convolution)."""
    tmp = tmp_path_factory.mktemp("coverage")
    paddle.seed(1)
    state = build_model({"name": "ResNet18", "class_num": 12}).state_dict()
    out = {"own": str(tmp / "own.pdparams"), "other_head": str(tmp / "other_head.pdparams"),
           "foreign": str(tmp / "foreign.pdparams")}
    paddle.save(state, out["own"])
    paddle.save({**state, "fc.weight": paddle.zeros([512, 3]), "fc.bias": paddle.zeros([3])}, out["other_head"])
    paddle.save({"stem.0.conv.weight": state["stem.0.conv.weight"], "encoder.layers.0.weight": paddle.zeros([8, 8])},
                out["foreign"])
    return out


@pytest.mark.parametrize("tool", ["eval", "infer", "export_model"])
def test_foreign_weights_with_one_matching_tensor_are_refused(make_config, files, tmp_path, capsys, tool):
    cfg, path = make_config(epochs=1, save_inference_dir=str(tmp_path / "inference"))
    assert load_tool(tool).main(["-c", path, "-o", f"Global.pretrained_model={files['foreign']}"]) == 2
    err = capsys.readouterr().err
    assert "Global.pretrained_model" in err and "covers 0.1% of the model's values (1/107 tensors)" in err, err
    assert "tensors outside the head stage did not load" in err and "min_weights_coverage" in err
    assert not os.path.exists(tmp_path / "inference")


def test_infer_refuses_to_run_without_weights(make_config, capsys):
    cfg, path = make_config(epochs=1)
    assert load_tool("infer").main(["-c", path]) == 2
    assert "Global.pretrained_model: not set: predictions would come from random weights" in capsys.readouterr().err


def test_training_from_foreign_weights_warns_loudly(make_config, files, caplog):
    cfg, path = make_config(epochs=1, max_train_steps=1, eval_during_train=False)
    Engine(load_config(path, [f"Global.pretrained_model={files['foreign']}"]), "train")
    assert "WEIGHTS DO NOT FIT THE MODEL: Global.pretrained_model" in caplog.text
    build_model({"name": "ResNet18", "class_num": 12, "pretrained": files["foreign"]})
    assert "WEIGHTS DO NOT FIT THE MODEL: Arch.pretrained" in caplog.text


def test_the_head_may_differ_by_default_and_the_rule_is_configurable(make_config, files):
    cfg, path = make_config(epochs=1)
    engine = Engine(load_config(path, [f"Global.pretrained_model={files['other_head']}"]), "eval")
    assert [m[0] for m in engine.pretrained_report.mismatched] == ["fc.weight", "fc.bias"]
    with pytest.raises(ConfigError, match="not loaded: fc.weight, fc.bias"):
        Engine(load_config(path, [f"Global.pretrained_model={files['other_head']}",
                                  "Global.min_weights_coverage=all"]), "eval")
    with pytest.raises(ConfigError, match="less than the 100% Global.min_weights_coverage asks for"):
        Engine(load_config(path, [f"Global.pretrained_model={files['other_head']}",
                                  "Global.min_weights_coverage=1.0"]), "eval")
    Engine(load_config(path, [f"Global.pretrained_model={files['other_head']}",
                              "Global.min_weights_coverage=0.99"]), "eval")   # the fc is 0.5% of ResNet18
    Engine(load_config(path, [f"Global.pretrained_model={files['foreign']}", "Global.min_weights_coverage=0"]),
           "eval")
    with pytest.raises(ConfigError, match="Global.min_weights_coverage: expected all_but_head, all or a share"):
        Engine(load_config(path, [f"Global.pretrained_model={files['own']}", "Global.min_weights_coverage=most"]),
               "eval")
    own = Engine(load_config(path, [f"Global.pretrained_model={files['own']}", "Global.min_weights_coverage=all"]),
                 "eval")
    assert not own.pretrained_report.missing and not own.pretrained_report.mismatched
    assert np.isfinite(own.model.state_dict()["fc.weight"].numpy()).all()
