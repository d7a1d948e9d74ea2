"""GoogLeNet's three outputs: GoogLeNetLoss, GoogLeNetTopkAcc, and a short training run with them."""
import os

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
import yaml

from ppfreeze.config import ConfigError, load_config
from ppfreeze.engine import Engine
from ppfreeze.loss import CELoss, build_loss
from ppfreeze.metric import GoogLeNetTopkAcc, TopkAcc


def _outputs(seed=0, n=4, c=6):
    rng = np.random.default_rng(seed)
    return [paddle.to_tensor(rng.standard_normal((n, c)).astype("float32")) for _ in range(3)], \
        paddle.to_tensor(rng.integers(0, c, (n, 1)))


def test_googlenet_loss_weights_the_auxiliary_heads_by_0_3():
    outs, label = _outputs()
    got = build_loss([{"GoogLeNetLoss": {"weight": 1.0}}], "Loss.Train")(outs, label)
    ce = [float(F.cross_entropy(o, label).mean()) for o in outs]
    np.testing.assert_allclose(float(got["GoogLeNetLoss"]), ce[0] + 0.3 * ce[1] + 0.3 * ce[2], rtol=1e-6)
    assert float(got["loss"]) == float(got["GoogLeNetLoss"])


def test_googlenet_loss_refuses_label_smoothing_and_single_outputs():
    with pytest.raises(ConfigError, match="label smoothing"):
        build_loss([{"GoogLeNetLoss": {"epsilon": 0.1}}], "Loss.Train")
    outs, label = _outputs()
    with pytest.raises(TypeError, match="aux1, aux2"):
        build_loss([{"GoogLeNetLoss": {}}], "Loss.Train")(outs[0], label)
    with pytest.raises(ConfigError, match="GoogLeNetLoss"):
        CELoss()(outs, label)


def test_googlenet_topk_reads_the_main_output():
    outs, _ = _outputs(seed=1)
    label = outs[0].argmax(axis=-1)
    outs[1] = -outs[0]  # an auxiliary head that is always wrong
    assert GoogLeNetTopkAcc(topk=[1, 2])(outs, label) == TopkAcc(topk=[1, 2])(outs[0], label)
    assert GoogLeNetTopkAcc(topk=[1])(outs, label) == {"top1": 1.0}
    with pytest.raises(TypeError, match="TopkAcc"):
        GoogLeNetTopkAcc()(outs[0], label)


def test_googlenet_trains_evaluates_and_predicts_with_its_loss_and_metric(make_config, demo_root, tmp_path):
    cfg, _ = make_config(arch="GoogLeNet", epochs=1, max_train_steps=1, max_eval_steps=1, image_shape=[3, 224, 224])
    cfg["Optimizer"]["lr"]["warmup_epoch"] = 0  # a warm-up would make the only step's LR 0
    cfg["Loss"] = {"Train": [{"GoogLeNetLoss": {"weight": 1.0}}], "Eval": [{"GoogLeNetLoss": {"weight": 1.0}}]}
    metric = [{"GoogLeNetTopkAcc": {"topk": [1, 5]}}]
    cfg["Metric"] = {"Train": metric, "Eval": metric}
    train_ops = cfg["DataLoader"]["Train"]["dataset"]["transform_ops"]
    train_ops[1] = {"RandCropImage": {"size": 224}}  # the auxiliary heads need 224 px
    eval_ops = cfg["DataLoader"]["Eval"]["dataset"]["transform_ops"]
    eval_ops[1], eval_ops[2] = {"ResizeImage": {"resize_short": 224}}, {"CropImage": {"size": 224}}
    for split in ("Train", "Eval"):
        cfg["DataLoader"][split]["sampler"]["batch_size"] = 2
    path = tmp_path / "googlenet.yaml"
    path.write_text(yaml.safe_dump(cfg))
    engine = Engine(load_config(str(path)), "train")
    before = {k: v.numpy().copy() for k, v in engine.model.state_dict().items() if "_out1" in k or "_out2" in k}
    result = engine.train()
    assert result["metric_key"] == "top1" and 0.0 <= result["best_metric"] <= 1.0
    after = engine.model.state_dict()
    # the auxiliary classifiers are trained through GoogLeNetLoss
    assert all(not np.array_equal(v, after[k].numpy()) for k, v in before.items())
    # prediction reads the main output
    from ppfreeze.engine.predict import predict
    with open(os.path.join(demo_root, "val_list.txt")) as f:
        image = os.path.join(demo_root, f.readline().split()[0])
    engine.config["Infer"] = {
        "infer_imgs": image, "batch_size": 1,
        "transforms": [{"DecodeImage": {"to_rgb": True}}, {"ResizeImage": {"size": 224}},
                       {"NormalizeImage": {"scale": 0.00392, "order": ""}}, {"ToCHWImage": None}],
        "PostProcess": {"name": "Topk", "topk": 3}}
    results = predict(engine)
    assert len(results) == 1 and len(results[0]["class_ids"]) == 3 and max(results[0]["class_ids"]) < 12
