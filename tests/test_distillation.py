"""DistillationModel (PaddleClas layout) with the teacher frozen through the Freeze plan.

Claims checked: PaddleClas's key layout (``Teacher.*`` / ``Student.*``) and config keys; a
teacher loaded from a file keeps every tensor and BN statistic bit-identical through training
(its own rule in the report and the audit), runs no backward (cut), and resume is bit-identical;
the student's gradients equal a hand-written KD loss; DML trains both models; export writes the
student only; ``until`` stays inside one model.
"""
import json
import os

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from conftest import tiny_config
from ppfreeze.arch import ModelOutputs, build_model
from ppfreeze.config.errors import ConfigError
from ppfreeze.engine import Engine
from ppfreeze.export import export_model
from ppfreeze.freeze import build_freeze_plan
from ppfreeze.loss import build_loss
from ppfreeze.metric import build_metrics

LIGHT = {"name": "PPLCNet_x0_25", "class_num": 12, "dropout_prob": 0.0}


def distill_arch(teacher, student, freeze=(True, False), **extra):
    return {"name": "DistillationModel", "freeze_params_list": list(freeze), "infer_model_name": "Student",
            "models": [{"Teacher": dict(teacher)}, {"Student": dict(student)}], **extra}


def x_y(seed=0, n=4):
    rng = np.random.default_rng(seed)
    return (paddle.to_tensor(rng.standard_normal((n, 3, 32, 32)).astype("float32")),
            paddle.to_tensor(rng.integers(0, 12, (n, 1)).astype("int64")))


def test_keys_are_paddleclas_layout_and_its_config_keys_are_accepted():
    paddle.seed(0)
    teacher = build_model({"name": "ResNet18", "class_num": 12})
    # a PaddleClas config's Arch, as written there (top-level class_num, use_sync_bn, pretrained_list...)
    model = build_model({"name": "DistillationModel", "class_num": 12, "pretrained_list": None, "use_sync_bn": True,
                         "freeze_params_list": [True, False], "infer_model_name": "Student",
                         "models": [{"Teacher": {"name": "ResNet18", "pretrained": False}},
                                    {"Student": {"name": "PPLCNet_x0_25", "dropout_prob": 0.0}}]})
    student = build_model({"name": "PPLCNet_x0_25", "class_num": 12})
    assert list(model.state_dict()) == [f"Teacher.{k}" for k in teacher.state_dict()] + \
        [f"Student.{k}" for k in student.state_dict()]
    assert model.Teacher.class_num == model.Student.class_num == model.class_num == 12  # top-level fallback
    out = model(x_y()[0])
    assert isinstance(out, ModelOutputs) and sorted(out) == ["Student", "Teacher"] and out.primary == "Student"
    assert model.frozen_by_arch == {"Arch.freeze_params_list.0": ["Teacher"]}


@pytest.mark.parametrize("arch, key", [
    ({"freeze_params_list": [True]}, "Arch.freeze_params_list"),
    ({"freeze_params_list": ["yes", False]}, "Arch.freeze_params_list.0"),
    ({"infer_model_name": "Studnet"}, "Arch.infer_model_name"),
    ({"pretrained_list": ["a", None, None]}, "Arch.pretrained_list"),
])
def test_arch_mistakes_name_the_key(arch, key):
    cfg = {**distill_arch(LIGHT, LIGHT), **arch}
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_model(cfg)


def test_until_stays_inside_one_model_and_stages_is_refused():
    model = build_model(distill_arch(LIGHT, LIGHT, freeze=(False, False)))
    plan = build_freeze_plan({"until": "Student.blocks3", "allow_random_frozen": True}, model)
    frozen = plan.state_at(1).frozen_names()
    assert frozen and all(n.startswith("Student.") for n in frozen)
    assert "Student.blocks3.0.pw_conv.conv.weight" in frozen and "Student.blocks4.0.pw_conv.conv.weight" not in frozen
    with pytest.raises(ConfigError, match=r"Freeze\.stages: the model runs several models side by side"):
        build_freeze_plan({"stages": 2}, model)
    with pytest.raises(ConfigError, match=r"Freeze\.until: 'blocks3' is not a stage or sublayer.*Did you mean: .*Student\.blocks3"):
        build_freeze_plan({"until": "blocks3"}, model)


def test_student_gradients_equal_a_hand_written_kd_loss():
    paddle.seed(1)
    model = build_model(distill_arch(LIGHT, LIGHT))
    plan = build_freeze_plan({"allow_random_frozen": True}, model)
    plan.apply(model)
    assert plan.current.cut_boundary is not None and plan.current.cut_boundary.startswith("Teacher.")
    x, y = x_y(2)
    model.train()
    loss = build_loss([{"DistillationKLDivLoss": {"weight": 1.0, "model_name_pairs": [["Student", "Teacher"]],
                                                  "temperature": 4}}], "Loss.Train")
    out = model(x)
    assert out["Teacher"].stop_gradient  # the frozen teacher kept no graph
    loss(out, y)["loss"].backward()
    ours = {n: p.grad.numpy().copy() for n, p in model.named_parameters() if p.grad is not None}
    assert ours and all(n.startswith("Student.") for n in ours)
    model.clear_gradients()

    temperature = 4.0  # Hinton's KD, written out: T^2 * mean_i sum_c p_t (log p_t - log softmax(s / T))
    student, teacher = model.Student(x), model.Teacher(x)
    p_t = F.softmax(teacher / temperature, axis=1)
    kd = (p_t * (paddle.log(p_t) - F.log_softmax(student / temperature, axis=1))).sum(axis=1).mean() * temperature ** 2
    kd.backward()
    for name, p in model.named_parameters():
        if name in ours:
            np.testing.assert_allclose(p.grad.numpy(), ours[name], rtol=1e-5, atol=1e-7, err_msg=name)


def test_dml_trains_both_models():
    paddle.seed(2)
    model = build_model(distill_arch(LIGHT, LIGHT, freeze=(False, False)))
    plan = build_freeze_plan({}, model)
    plan.apply(model)
    loss = build_loss([{"DistillationGTCELoss": {"weight": 1.0, "model_names": ["Student", "Teacher"]}},
                       {"DistillationDMLLoss": {"weight": 1.0, "model_name_pairs": [["Student", "Teacher"]]}}],
                      "Loss.Train")
    names = [n for n, _ in plan.optimizer_parameters(model)]
    assert any(n.startswith("Teacher.") for n in names) and any(n.startswith("Student.") for n in names)
    optimizer = paddle.optimizer.Momentum(0.1, parameters=[p for _, p in plan.optimizer_parameters(model)])
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    model.train()
    for seed in range(2):
        x, y = x_y(seed)
        loss(model(x), y)["loss"].backward()
        optimizer.step()
        optimizer.clear_grad()
    after = model.state_dict()
    for who in ("Teacher", "Student"):
        for key in (f"{who}.conv1.conv.weight", f"{who}.fc.weight", f"{who}.conv1.bn._mean"):
            assert not np.array_equal(before[key], after[key].numpy()), key


def test_frozen_teacher_from_a_file_stays_bit_identical_resumes_and_exports_the_student(demo_root, tmp_path):
    paddle.seed(3)
    teacher_file = str(tmp_path / "teacher.pdparams")
    paddle.save(build_model({"name": "ResNet18", "class_num": 12}).state_dict(), teacher_file)
    teacher_state = paddle.load(teacher_file)
    cfg = tiny_config(demo_root, str(tmp_path / "output"), epochs=2)
    cfg["Global"].update(max_train_steps=2, max_eval_steps=1)
    cfg["Arch"] = distill_arch({"name": "ResNet18", "class_num": 12, "pretrained": teacher_file[:-len(".pdparams")]},
                               LIGHT)
    cfg["Loss"]["Train"] = [{"DistillationGTCELoss": {"weight": 1.0, "model_names": ["Student"]}},
                            {"DistillationDKDLoss": {"weight": 1.0, "model_name_pairs": [["Student", "Teacher"]],
                                                     "temperature": 2}}]
    cfg["Metric"] = {"Train": [{"DistillationTopkAcc": {"model_key": "Student", "topk": [1, 5]}}],
                     "Eval": [{"DistillationTopkAcc": {"model_key": "Student", "topk": [1, 5]}}]}
    Engine(cfg, "train").train()
    out = os.path.join(cfg["Global"]["output_dir"], "DistillationModel")
    final = paddle.load(os.path.join(out, "epoch_2.pdparams"))
    for key, value in teacher_state.items():  # parameters and BN running statistics
        assert np.array_equal(np.asarray(final[f"Teacher.{key}"]), np.asarray(value)), key
    assert not np.array_equal(np.asarray(final["Student.fc.weight"]),
                              np.asarray(paddle.load(os.path.join(out, "epoch_1.pdparams"))["Student.fc.weight"]))
    with open(os.path.join(out, "freeze_report.json")) as f:
        report = json.load(f)
    rule = report["rules"][0]
    assert rule["key"] == "Arch.freeze_params_list.0" and rule["select"] == ["Teacher"]
    assert rule["method_used"] == {"cut": len(rule["params"])} and rule["bn"] == "frozen"
    assert report["method"]["cut_boundary"] == "Teacher.fc"
    assert f"(Arch.freeze_params_list.0: {len(teacher_state)})" in report["audit"]

    resumed = dict(cfg, Global=dict(cfg["Global"], checkpoints=os.path.join(out, "epoch_1"),
                                    output_dir=str(tmp_path / "resumed")))
    Engine(resumed, "train").train()
    again = paddle.load(os.path.join(str(tmp_path / "resumed"), "DistillationModel", "epoch_2.pdparams"))
    for key in final:
        assert np.array_equal(np.asarray(final[key]), np.asarray(again[key])), key

    export_cfg = dict(cfg, Global=dict(cfg["Global"], pretrained_model=os.path.join(out, "epoch_2"),
                                       save_inference_dir=str(tmp_path / "inference")))
    result = export_model(export_cfg)
    engine = Engine(export_cfg, "export")
    engine.model.eval()
    x = x_y(5)[0]
    loaded = paddle.jit.load(os.path.join(result.save_dir, "inference"))
    student = engine.model.Student
    assert sum(int(np.prod(p.shape)) for p in loaded.parameters()) == \
        sum(int(np.prod(p.shape)) for p in student.parameters())
    np.testing.assert_allclose(loaded(x).numpy(), F.softmax(student(x)).numpy(), rtol=0, atol=1e-5)
    assert result.meta["Freeze"]["rules"][0]["key"] == "Arch.freeze_params_list.0"


def test_plain_metrics_and_losses_read_the_deployed_model():
    model = build_model(distill_arch(LIGHT, LIGHT))
    model.eval()
    x, y = x_y(7)
    out = model(x)
    plain = build_metrics([{"TopkAcc": {"topk": [1]}}], "Metric.Eval")(out, y)
    distill = build_metrics([{"DistillationTopkAcc": {"model_key": "Student", "topk": [1]}}], "Metric.Eval")(out, y)
    teacher = build_metrics([{"DistillationTopkAcc": {"model_key": "Teacher", "topk": [1]}}], "Metric.Eval")(out, y)
    assert float(plain["top1"]) == float(distill["top1"])
    ce = build_loss([{"CELoss": {"weight": 1.0}}], "Loss.Eval")(out, y)["loss"]
    assert float(ce) == float(F.cross_entropy(out["Student"], y))
    assert float(teacher["top1"]) == float((out["Teacher"].argmax(1) == y.reshape([-1])).astype("float32").mean())


def test_return_patterns_and_return_stages_add_inner_features_for_distance_losses():
    model = build_model(distill_arch({**LIGHT, "return_stages": True}, {**LIGHT, "return_patterns": ["blocks4"]},
                                     freeze=(False, False)))
    out = model(x_y()[0])
    assert sorted(out["Teacher"]) == ["blocks2", "blocks3", "blocks4", "blocks5", "blocks6", "logits"]
    assert sorted(out["Student"]) == ["blocks4", "logits"]
    loss = build_loss([{"DistillationDistanceLoss": {"weight": 1.0, "key": "blocks4",
                                                      "model_name_pairs": [["Student", "Teacher"]]}}], "Loss.Train")
    expected = F.mse_loss(out["Student"]["blocks4"], out["Teacher"]["blocks4"])
    assert float(loss(out, x_y()[1])["loss"]) == float(expected)
    resnet = build_model({"name": "ResNet18", "class_num": 12, "return_patterns": ["blocks[1]", "avg_pool"]})
    assert sorted(resnet(x_y()[0])) == ["avg_pool", "blocks[1]", "logits"]
    with pytest.raises(ConfigError, match=r"Arch\.return_patterns\.0: model ResNet18 has no sublayer 'block\[1\]'.*Did you mean: blocks\[1\]"):
        build_model({"name": "ResNet18", "return_patterns": ["block[1]"]})


def test_paddleclas_freeze_params_list_is_stop_gradient_with_bn_statistics_moving():
    """The Paddle fact behind PaddleClas's frozen teacher (docs/design.md): ``trainable = False`` sets
    ``stop_gradient``, so no graph is built, but BN in train mode still updates its statistics."""
    layer = build_model({"name": "PPLCNet_x0_25", "class_num": 12})
    for p in layer.parameters():
        p.trainable = False
    assert all(p.stop_gradient for p in layer.parameters())
    mean = layer.conv1.bn._mean.numpy().copy()
    layer.train()
    out = layer(x_y()[0])
    assert out.stop_gradient
    assert not np.array_equal(mean, layer.conv1.bn._mean.numpy())


# ----------------------------------------------------------------------------- DistillationPairLoss (MGD, PEFD)
def pair_loss(**kwargs):
    return build_loss([{"DistillationGTCELoss": {"weight": 1.0, "model_names": ["Student"]}},
                       {"DistillationPairLoss": {"weight": 1.0, "model_name_pairs": [["Student", "Teacher"]],
                                                 **kwargs}}], "Loss.Train")


def features(seed, s_shape, t_shape, key="f"):
    rng = np.random.default_rng(seed)
    fs = paddle.to_tensor(rng.standard_normal(s_shape).astype("float32"), stop_gradient=False)
    ft = paddle.to_tensor(rng.standard_normal(t_shape).astype("float32"))
    logits = paddle.to_tensor(rng.standard_normal((s_shape[0], 12)).astype("float32"))
    return {"Student": {"logits": logits, key: fs}, "Teacher": {"logits": logits, key: ft}}, fs, ft


def test_mgd_pair_loss_is_masked_generation_mse_with_paddleclas_keys():
    loss = pair_loss(base_loss_name="MGDLoss", s_key="f", t_key="f", student_channels=3, teacher_channels=5,
                     lambda_mgd=0.5)
    keys = [k for k in loss.state_dict() if k.startswith("loss_func.1.")]
    assert keys == ["loss_func.1.loss_func.align.weight", "loss_func.1.loss_func.align.bias",
                    "loss_func.1.loss_func.generation.0.weight", "loss_func.1.loss_func.generation.0.bias",
                    "loss_func.1.loss_func.generation.2.weight", "loss_func.1.loss_func.generation.2.bias"]
    mgd = loss.loss_func[1].loss_func
    predicts, fs, ft = features(0, (2, 3, 4, 4), (2, 5, 4, 4))
    label = paddle.zeros([2, 1], "int64")
    paddle.seed(5)
    value = float(loss(predicts, label)["DistillationPairLoss"])
    paddle.seed(5)
    again = float(loss(predicts, label)["DistillationPairLoss"])
    assert value == again  # the mask comes from Paddle's generator
    paddle.seed(5)
    keep = (paddle.rand([2, 5, 1, 1]) >= 0.5).astype("float32")
    assert 0 < float(keep.mean()) < 1
    expected = F.mse_loss(mgd.generation(mgd.align(fs) * keep), ft) * 1.756
    np.testing.assert_allclose(value, float(expected), rtol=1e-6)


def test_pefd_pair_loss_is_one_minus_cosine_of_the_projector_mean():
    loss = pair_loss(base_loss_name="PEFDLoss", s_key="f", t_key="f", student_channel=6, teacher_channel=4,
                     num_projectors=2)
    assert [k for k in loss.state_dict() if k.startswith("loss_func.1.")] == [
        f"loss_func.1.loss_func.projectors.{i}.conv.{w}" for i in range(2) for w in ("weight", "bias")]
    pefd = loss.loss_func[1].loss_func
    predicts, fs, ft = features(1, (3, 6, 1, 1), (3, 4, 1, 1))
    value = loss(predicts, paddle.zeros([3, 1], "int64"))["DistillationPairLoss"]
    s = sum(F.relu(p.conv(fs.flatten(1))) for p in pefd.projectors) / 2
    t = ft.flatten(1)
    cosine = (s * t).sum(1) / (s.norm(axis=1) * t.norm(axis=1))
    np.testing.assert_allclose(float(value), float((1 - cosine).mean()), rtol=1e-6)
    value.backward()
    assert fs.grad is not None and all(p.grad is not None for p in pefd.parameters())


@pytest.mark.parametrize("kwargs, match", [
    ({"base_loss_name": "MGDLos", "s_key": "f", "t_key": "f"}, r"DistillationPairLoss\.base_loss_name: unknown .*MGDLoss"),
    ({"base_loss_name": "MGDLoss", "s_key": "f", "t_key": ["f"], "student_channels": 2, "teacher_channels": 2},
     r"DistillationPairLoss\.s_key: 'f', and t_key \['f'\]: expected both strings"),
    ({"base_loss_name": "PEFDLoss", "s_key": "f", "t_key": "f", "student_channel": 2, "teacher_channel": 2,
      "mode": "max"}, r"mode: expected flatten or gap"),
    ({"base_loss_name": "PEFDLoss", "s_key": "f", "t_key": "f", "student_channel": 2, "teacher_channel": 2,
      "student_channels": 2}, r"student_channels"),
])
def test_pair_loss_mistakes_name_the_argument(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        pair_loss(**kwargs)


def test_loss_parameters_train_are_saved_and_resume_bit_identically(demo_root, tmp_path):
    """PaddleClas optimizes [model, train_loss]: MGD's generator trains with the student, is saved
    in .pdparams under PaddleClas's keys, and a resume restores it and its optimizer state."""
    paddle.seed(4)
    cfg = tiny_config(demo_root, str(tmp_path / "output"), epochs=2)
    cfg["Global"].update(max_train_steps=2, max_eval_steps=1, eval_during_train=False)
    cfg["Arch"] = distill_arch({**LIGHT, "return_patterns": ["blocks4"]}, {**LIGHT, "return_patterns": ["blocks4"]})
    cfg["Freeze"] = {"allow_random_frozen": True}
    cfg["Loss"]["Train"] = [{"DistillationGTCELoss": {"weight": 1.0, "model_names": ["Student"]}},
                            {"DistillationPairLoss": {"weight": 1.0, "base_loss_name": "MGDLoss",
                                                      "model_name_pairs": [["Student", "Teacher"]],
                                                      "s_key": "blocks4", "t_key": "blocks4", "name": "loss_mgd",
                                                      "student_channels": 32, "teacher_channels": 32}}]
    cfg["Metric"] = {"Train": [{"DistillationTopkAcc": {"model_key": "Student", "topk": [1]}}]}
    engine = Engine(cfg, "train")
    initial = {k: v.numpy().copy() for k, v in engine.model.state_dict().items()}
    engine.train()
    generator = engine.train_loss.loss_func[1].loss_func.generation[0].weight
    assert any(p is generator for group in engine.optimizer._parameter_list
               for p in (group["params"] if isinstance(group, dict) else [group]))
    out = os.path.join(cfg["Global"]["output_dir"], "DistillationModel")
    final = paddle.load(os.path.join(out, "epoch_2.pdparams"))
    first = paddle.load(os.path.join(out, "epoch_1.pdparams"))
    key = "loss_func.1.loss_func.generation.0.weight"
    assert not np.array_equal(np.asarray(final[key]), np.asarray(first[key]))   # it trained
    np.testing.assert_array_equal(np.asarray(final[key]), generator.numpy())
    opt = paddle.load(os.path.join(out, "epoch_2.pdopt"))
    assert f"{key}@velocity" in opt
    assert all(np.array_equal(initial[k], np.asarray(final[k])) for k in initial if k.startswith("Teacher."))

    resumed = dict(cfg, Global=dict(cfg["Global"], checkpoints=os.path.join(out, "epoch_1"),
                                    output_dir=str(tmp_path / "resumed")))
    Engine(resumed, "train").train()
    again = paddle.load(os.path.join(str(tmp_path / "resumed"), "DistillationModel", "epoch_2.pdparams"))
    assert sorted(again) == sorted(final)
    for k in final:
        assert np.array_equal(np.asarray(final[k]), np.asarray(again[k])), k


def test_loss_parameters_under_data_parallel_are_refused(demo_root, tmp_path, monkeypatch):
    """DataParallel wraps the model only: a loss with parameters would drift apart across ranks."""
    import ppfreeze.engine.engine as engine_module
    cfg = tiny_config(demo_root, str(tmp_path / "output"), epochs=1)
    cfg["Global"]["eval_during_train"] = False
    cfg["Arch"] = distill_arch({**LIGHT, "return_patterns": ["blocks4"]}, {**LIGHT, "return_patterns": ["blocks4"]})
    cfg["Freeze"] = {"allow_random_frozen": True}
    cfg["Loss"]["Train"] = [{"DistillationPairLoss": {"weight": 1.0, "base_loss_name": "MGDLoss",
                                                      "model_name_pairs": [["Student", "Teacher"]],
                                                      "s_key": "blocks4", "t_key": "blocks4",
                                                      "student_channels": 32, "teacher_channels": 32}}]
    cfg["Metric"] = {"Train": [{"DistillationTopkAcc": {"model_key": "Student", "topk": [1]}}]}
    monkeypatch.setattr(engine_module, "world_size", lambda: 2)
    with pytest.raises(ConfigError, match=r"Loss.Train: has trainable parameters \(loss_func.0.*synchronise"):
        Engine(cfg, "train").train()   # before any step
