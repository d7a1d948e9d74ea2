"""Multi-label losses, metrics and threshold / attribute post-processes against hand-computed numbers."""
import math

import numpy as np
import paddle
import pytest

from ppfreeze.config.errors import ConfigError
from ppfreeze.data import (MultiLabelThreshOutput, PersonAttribute, ScoreOutput, TableAttribute, ThreshOutput,
                           VehicleAttribute)
from ppfreeze.loss import LOSSES, build_loss
from ppfreeze.metric import build_metrics
from ppfreeze.retrieval.metrics import mean_average_precision, precision_at_k, recall_at_k

LN2 = math.log(2.0)
SOFTPLUS2 = math.log(1.0 + math.e ** 2)   # BCE of logit 2 against target 0


def t(x, dtype="float32"):
    return paddle.to_tensor(np.asarray(x, dtype=dtype))


def logit(p):
    p = np.asarray(p, dtype=np.float64)
    return np.log(p / (1 - p))


# ----------------------------------------------------------------------------- losses
def test_multilabel_loss_plain_smoothed_and_ratio_weighted():
    x, y = t([[0.0, 2.0]]), t([[1.0, 0.0]])
    loss = lambda **kw: float(LOSSES.build({"MultiLabelLoss": kw})(x, y if "weight_ratio" not in kw else y3))
    y3 = t([[[1.0, 0.0], [0.25, 0.5]]])   # labels + class ratios
    assert loss() == pytest.approx((LN2 + SOFTPLUS2) / 2, rel=1e-6)
    assert loss(size_sum=True) == pytest.approx(LN2 + SOFTPLUS2, rel=1e-6)
    # epsilon 0.2 over 2 classes: targets 0.9 / 0.1; BCE(0, 0.9) = ln 2, BCE(2, 0.1) = softplus(2) - 0.2
    assert loss(epsilon=0.2) == pytest.approx((LN2 + SOFTPLUS2 - 0.2) / 2, rel=1e-6)
    # positives weighted exp(1 - ratio), negatives exp(ratio)
    weighted = LN2 * math.exp(0.75) + SOFTPLUS2 * math.exp(0.5)
    assert loss(weight_ratio=True, size_sum=True) == pytest.approx(weighted, rel=1e-6)
    assert loss(weight_ratio=True) == pytest.approx(weighted / 2, rel=1e-6)
    unknown = t([[[-1.0, 0.0], [0.25, 0.5]]])   # -1: unknown attribute, weight 0
    value = float(LOSSES.build({"MultiLabelLoss": {"weight_ratio": True, "size_sum": True}})(x, unknown))
    assert value == pytest.approx(SOFTPLUS2 * math.exp(0.5), rel=1e-6)
    with pytest.raises(ValueError, match="label_ratio: true"):
        LOSSES.build({"MultiLabelLoss": {"weight_ratio": True}})(x, y)
    with pytest.raises(ValueError, match=r"do not fit logits of shape \[1, 2\]"):
        LOSSES.build({"MultiLabelLoss": {}})(x, t([[1.0, 0.0, 1.0]]))


def test_asymmetric_loss_values_and_focal_gradient():
    y = t([[1.0, 0.0]])
    # positive: p = 0.5, weight (1 - 0.5)^1; negative: p shifted to 1 - 0.5 + 0.05 = 0.55, weight 0.45^4
    expected = 0.5 * LN2 + (-math.log(0.55)) * 0.45 ** 4
    for kwargs, value in (({}, expected), ({"reduction": "mean"}, expected / 2)):
        x = t([[0.0, 0.0]])
        x.stop_gradient = False
        loss = LOSSES.build({"MultiLabelAsymmetricLoss": kwargs})(x, y)
        assert float(loss) == pytest.approx(value, rel=1e-6)
    x = t([[0.0, 0.0]])
    x.stop_gradient = False
    LOSSES.build({"MultiLabelAsymmetricLoss": {}})(x, y).backward()
    assert float(x.grad[0, 0]) == pytest.approx(-0.25, rel=1e-5)   # weight held constant: -(1 - p) * 0.5
    x = t([[0.0, 0.0]])
    x.stop_gradient = False
    LOSSES.build({"MultiLabelAsymmetricLoss": {"disable_focal_loss_grad": False}})(x, y).backward()
    assert float(x.grad[0, 0]) == pytest.approx(-0.25 - 0.25 * LN2, rel=1e-5)   # the weight's own slope too


def test_celoss_reduction_and_config_errors():
    x, ids = t([[0.0, 0.0], [0.0, 0.0]]), t([0, 1], "int64")
    assert float(LOSSES.build({"CELoss": {"reduction": "sum"}})(x, ids)) == pytest.approx(2 * LN2, rel=1e-6)
    assert float(LOSSES.build({"CELoss": {}})(x, ids)) == pytest.approx(LN2, rel=1e-6)
    with pytest.raises(ConfigError, match="reduction: must be 'mean' or 'sum'") as e:
        build_loss([{"CELoss": {"reduction": "none"}}], "Loss.Train")
    assert e.value.key == "Loss.Train.0.CELoss.reduction"
    with pytest.raises(ConfigError) as e:
        build_loss([{"MultiLabelAsymmetricLoss": {"gama_pos": 0}}], "Loss.Train")
    assert e.value.key == "Loss.Train.0.MultiLabelAsymmetricLoss.gama_pos"


# ----------------------------------------------------------------------------- metrics
def evaluate(cfg, batches):
    metric = build_metrics(cfg, "Metric.Eval")
    metric.reset()
    averages, count = {}, 0
    for x, y in batches:
        for k, v in metric.update(t(x), t(y)).items():
            averages[k] = averages.get(k, 0.0) + float(v) * len(x)
        count += len(x)
    return metric.results({k: v / count for k, v in averages.items()})


def test_hamming_distance_and_accuracy_score():
    x = [[1.0, -1.0, 2.0], [-1.0, -1.0, 1.0]]        # predicted [[1, 0, 1], [0, 0, 1]]
    y = [[1.0, 1.0, 1.0], [0.0, 0.0, 1.0]]
    values = build_metrics([{"HammingDistance": None}, {"AccuracyScore": None}], "m")(t(x), t(y))
    assert values == pytest.approx({"HammingDistance": 1 / 6, "AccuracyScore": 5 / 6})
    sample = build_metrics([{"AccuracyScore": {"base": "sample"}}], "m")(t(x), t(y))
    assert sample["AccuracyScore"] == 0.5
    with pytest.raises(ConfigError, match="base: must be 'sample' or 'label'"):
        build_metrics([{"AccuracyScore": {"base": "row"}}], "Metric.Eval")


def test_multilabel_map_integral_and_11point():
    # class 0 ranked [+, -, +, -]: AP = 1 * 0.5 + 2/3 * 0.5; class 1 has no positive (skipped);
    # class 2 ranked [-, -, -, +]: AP = 1/4
    x = np.array([[3, 0, 0], [2, 0, 0], [1, 0, 0], [0, 0, 1]], dtype=np.float32)
    x[:, 2] = [3, 2, 1, 0]
    y = np.array([[1, 0, 0], [0, 0, 0], [1, 0, 0], [0, 0, 1]], dtype=np.float32)
    batches = [(x[:3], y[:3]), (x[3:], y[3:])]
    integral = evaluate([{"MultiLabelMAP": None}], batches)["MultiLabelMAP"]
    assert integral == pytest.approx(((1 + 2 / 3) / 2 + 1 / 4) / 2)
    # 11 point: class 0 best precision 1 at recall <= 0.5, 2/3 above; class 2: 1/4 everywhere
    eleven = evaluate([{"MultiLabelMAP": {"map_type": "11point"}}], batches)["MultiLabelMAP"]
    assert eleven == pytest.approx(((6 + 5 * 2 / 3) / 11 + 1 / 4) / 2)
    metric = build_metrics([{"MultiLabelMAP": None}], "m")
    assert metric(t(x), t(y)) == {}   # a per-batch call (training logs) reports nothing


def test_attr_metric_on_a_hand_checked_example():
    outputs = [[0.6, 0.4], [0.7, 0.9], [0.2, 0.8]]   # raw outputs, thresholded at 0.5
    labels = [[[1, 0], [0.5, 0.5]], [[0, 1], [0.5, 0.5]], [[1, -1], [0.5, 0.5]]]   # -1: unknown
    values = evaluate([{"ATTRMetric": None}], [(outputs[:2], labels[:2]), (outputs[2:], labels[2:])])
    expected = {"ma": (0.25 + 1) / 2, "label_f1": (0.6 + 2 * 0.75 / 1.75) / 2, "label_pos_recall": 0.75,
                "label_neg_recall": 0.5, "instance_f1": 2 * 0.5 * (2 / 3) / (0.5 + 2 / 3), "instance_acc": 0.5,
                "instance_prec": 0.5, "instance_recall": 2 / 3}
    assert list(values) == list(expected) and values == pytest.approx(expected)


def test_tpr_at_fpr_best_threshold_under_the_cap():
    pos, neg = [0.9, 0.6, 0.3], [0.71234, 0.15678]
    x = np.stack([np.zeros(5), logit(pos + neg)], axis=1)
    y = np.array([[1], [1], [1], [0], [0]])
    strict = evaluate([{"TprAtFpr": {"max_fpr": 0.0}}], [(x, y)])
    assert strict == pytest.approx({"tpr": 1 / 3, "fpr": 0.0, "threshold": 0.7124})
    loose = evaluate([{"TprAtFpr": {"max_fpr": 0.5}}, {"TopkAcc": {"topk": [1]}}], [(x[:2], y[:2]), (x[2:], y[2:])])
    assert list(loose) == ["tpr", "fpr", "threshold", "top1"]
    assert loose["tpr"] == 1.0 and loose["fpr"] == 0.5 and loose["threshold"] == pytest.approx(0.1568)
    assert loose["top1"] == pytest.approx(3 / 5)   # class 1 wins for 0.9, 0.6, 0.71234
    no_negatives = evaluate([{"TprAtFpr": None}], [(x[:3], y[:3])])
    assert no_negatives == {"tpr": 1.0, "fpr": 0.0, "threshold": 0.0}
    nothing = evaluate([{"TprAtFpr": {"max_fpr": 0.0}}], [(np.stack([np.zeros(2), logit([0.2, 0.9])], 1), [[1], [0]])])
    assert nothing["tpr"] == 0.0 and math.isnan(nothing["threshold"])


def test_retrieval_metrics_skip_same_camera_images_of_the_query_identity():
    query, q_label, q_cam = np.array([[1.0, 0.0]]), [1], [0]
    gallery = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2]])   # same id same camera, distractor, true match
    g_label, g_cam = [1, 3, 1], [0, 1, 1]
    cams = dict(query_cameras=q_cam, gallery_cameras=g_cam)
    assert recall_at_k(query, q_label, gallery, g_label, (1, 2), **cams) == \
        {"recall1": 0.0, "recall2": 1.0, "num_queries_without_positive": 0}
    assert mean_average_precision(query, q_label, gallery, g_label, **cams)["mAP"] == 0.5
    assert precision_at_k(query, q_label, gallery, g_label, (1, 2), **cams) == {"precision@1": 0.0,
                                                                               "precision@2": 0.5}
    assert recall_at_k(query, q_label, gallery, g_label, (1,))["recall1"] == 1.0   # without cameras


# ----------------------------------------------------------------------------- post-processing
def test_thresh_output_binary_and_multi_class(tmp_path):
    post = ThreshOutput(0.6, label_0="no", label_1="yes")
    logits = np.array([[0.0, math.log(3)], [math.log(3), 0.0]])
    first, second = post(logits, ["a.jpg", "b.jpg"])
    assert first == {"class_ids": [1], "scores": [pytest.approx(0.75)], "label_names": ["yes"], "file_name": "a.jpg"}
    assert second["class_ids"] == [0] and second["scores"] == [pytest.approx(0.75)] and second["label_names"] == ["no"]
    assert post(np.array([[0.25, 0.75]]))[0]["scores"] == [pytest.approx(0.75)]   # probabilities detected
    assert "file_name" not in post(logits)[0]
    names = tmp_path / "names.txt"
    names.write_text("0 cat\n1 dog\n2 bird\n")
    multi = ThreshOutput(0.5, default_label_index=2, class_id_map_file=str(names), from_logits=False)
    results = multi(np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]]))
    assert [r["class_ids"] for r in results] == [[0], [2]] and results[1]["label_names"] == ["bird"]
    with pytest.raises(ConfigError) as e:
        ThreshOutput(0.5, from_logits="yes")
    assert e.value.key == "from_logits"


def test_multilabel_thresh_output_and_score_output(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("0 person\n1 car\n2 dog\n")
    post = MultiLabelThreshOutput(0.5, class_id_map_file=str(names))
    result = post(np.array([[2.0, -2.0, 0.0]]), ["x.jpg"])[0]
    assert result == {"class_ids": [0, 2], "scores": [0.8808, 0.5], "label_names": ["person", "dog"],
                      "file_name": "x.jpg"}
    assert MultiLabelThreshOutput(0.5, from_logits=True)(np.array([[0.9, 0.2]]))[0]["class_ids"] == [0, 1]
    assert MultiLabelThreshOutput(0.5)(np.array([[0.9, 0.2]]))[0]["class_ids"] == [0]   # probabilities detected
    assert ScoreOutput(2)(np.array([[0.123, 4.567]]), ["s.jpg"]) == [{"scores": [0.12, 4.57], "file_name": "s.jpg"}]


def test_person_attribute_labels_and_outputs():
    p = np.full(26, 0.1)
    p[22], p[19:22], p[23:] = 0.9, [0.1, 0.8, 0.1], [0.1, 0.1, 0.7]   # female, 18-60, back
    p[1], p[18], p[15:18] = 0.35, 0.55, [0.2, 0.6, 0.1]              # glasses (> 0.3), hold (< 0.6), bag
    p[2], p[3], p[5], p[11] = 0.1, 0.7, 0.9, 0.4                     # long sleeve, logo, trousers by argmax
    expected = ["Female", "Age18-60", "Back", "Glasses: True", "Hat: False", "HoldObjectsInFront: False",
                "ShoulderBag", "Upper: LongSleeve UpperLogo", "Lower:  Trousers", "No boots"]
    output = [0] * 26
    for i in (1, 3, 5, 16, 20, 22, 25):
        output[i] = 1
    for scores in (p[None], logit(p)[None]):   # probabilities (exported model) and logits
        (result,) = PersonAttribute()(scores)
        assert result == {"attributes": expected, "output": output}
    with pytest.raises(ValueError, match="expects 26 attribute scores"):
        PersonAttribute()(np.zeros((1, 20)))


def test_vehicle_and_table_attributes():
    p = np.full(19, 0.05)
    p[4], p[11] = 0.93, 0.4   # red; suv below the type threshold
    (vehicle,) = VehicleAttribute()(p[None], ["car.jpg"])
    assert vehicle["attributes"] == "Color: (red, prob: 0.93), Type unknown"
    assert vehicle["output"] == [int(i == 4) for i in range(19)] and vehicle["file_name"] == "car.jpg"
    table = TableAttribute(obstruction_threshold=0.8)(np.array([[0.9, 0.2, 0.6, 0.4, 0.7, 0.1]]))[0]
    assert table == {"attributes": ["Scanned", "Numerous", "Black-and-White", "Blurry", "With-Obstacles", "Tilted"],
                     "output": [1, 0, 1, 0, 0, 0]}


def test_epoch_metric_merges_ranks_in_sample_order_without_padding():
    from ppfreeze.data.sampler import DistributedBatchSampler
    from ppfreeze.metric import MultiLabelMAP
    n, ranks = 7, 2   # padded to 8 by the sampler: sample 0 appears twice
    per_rank = []
    for rank in range(ranks):
        shard = DistributedBatchSampler(list(range(n)), 2, num_replicas=ranks, rank=rank)
        per_rank.append([(np.array(b, np.float32)[:, None], np.array(b)[:, None]) for b in shard])
    metric = MultiLabelMAP()
    metric.merge_ranks(per_rank, n)
    merged = np.concatenate([logits for logits, _ in metric.batches]).ravel()
    assert merged.tolist() == list(range(n))
