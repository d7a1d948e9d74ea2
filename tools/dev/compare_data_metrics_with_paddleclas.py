"""Compare ppfreeze's datasets, losses, metrics and post-processes with PaddleClas's own code.

Feeds identical inputs (random logits / targets, tiny generated dataset files) to both and
prints, per component, whether the results agree (max |difference| for numbers, equality for
labels, ids and strings). Run with a Python that can import PaddleClas (it needs scikit-learn):

    /work/pcenv/bin/python tools/dev/compare_data_metrics_with_paddleclas.py --paddleclas /work/pc

Nothing of PaddleClas is copied into ppfreeze; it is imported from --paddleclas only here.
"""
from __future__ import annotations

import argparse
import io
import os
import pickle
import sys
import tarfile
import tempfile
from typing import Any, Dict, List, Tuple

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)

Row = Tuple[str, str, bool]   # (component, what was compared, agrees)
TOL = 1e-6


def _tensor(a):
    import paddle
    return paddle.to_tensor(a)


def _diff(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    both_nan = np.isnan(a) & np.isnan(b)
    return float(np.max(np.where(both_nan, 0.0, np.abs(a - b)), initial=0.0))


def _row(component: str, ours, theirs, what: str = "") -> Row:
    d = _diff(ours, theirs)
    return component, f"{what} max|diff| {d:.2e}".strip(), d <= TOL * max(1.0, float(np.max(np.abs(theirs), initial=0)))


# ----------------------------------------------------------------------------- metrics
def compare_metrics() -> List[Row]:
    import ppcls.metric.metrics as pc
    from ppfreeze.metric import build_metrics
    rng = np.random.default_rng(0)
    rows: List[Row] = []
    batches = [(rng.normal(0, 2, (n, 7)).astype("float32"), (rng.random((n, 7)) > 0.6).astype("float32"))
               for n in (16, 16, 9)]

    for base in ("label", "sample"):
        theirs = [float(pc.AccuracyScore(base)(_tensor(x), _tensor(t))["AccuracyScore"]) for x, t in batches]
        ours = [build_metrics([{"AccuracyScore": {"base": base}}], "m")(_tensor(x), _tensor(t))["AccuracyScore"]
                for x, t in batches]
        rows.append(_row(f"AccuracyScore(base={base})", ours, theirs, "per batch"))
    theirs = [float(pc.HammingDistance()(_tensor(x), _tensor(t))["HammingDistance"]) for x, t in batches]
    ours = [build_metrics([{"HammingDistance": None}], "m")(_tensor(x), _tensor(t))["HammingDistance"]
            for x, t in batches]
    rows.append(_row("HammingDistance", ours, theirs, "per batch"))

    # multi-label mAP: random scores, then quantised scores (ties) with few positives (11-point scan quirk)
    tied = [(np.round(x), (rng.random(x.shape) > 0.85).astype("float32")) for x, _ in batches]
    for name, data in (("random", batches), ("ties, few positives", tied)):
        for map_type in ("integral", "11point"):
            theirs = pc.MultiLabelMAP(map_type)
            for x, t in data:
                theirs(_tensor(x), _tensor(t))
            ours = _epoch_result([{"MultiLabelMAP": {"map_type": map_type}}], data)
            rows.append(_row(f"MultiLabelMAP({map_type})", ours["MultiLabelMAP"], theirs.avg, name))

    # attributes: [N, 2, C] targets with -1 (unknown) entries, raw outputs thresholded
    attr = [(x, np.stack([np.where(rng.random(t.shape) < 0.1, -1.0, t).astype("float32"),
                          np.full_like(t, 0.3)], axis=1)) for x, t in batches]
    for threshold in (0.5, -0.2):
        theirs = pc.ATTRMetric(threshold)
        theirs.reset()
        for x, t in attr:
            theirs(_tensor(x), _tensor(t))
        ours = _epoch_result([{"ATTRMetric": {"threshold": threshold}}], attr)
        rows.append(_row(f"ATTRMetric(threshold={threshold})", list(ours.values()), theirs.attrmeter.res(),
                         "8 values"))

    binary = [(rng.normal(0, 1.5, (n, 2)).astype("float32"), rng.integers(0, 2, (n, 1))) for n in (40, 40, 17)]
    only_pos = [(x, np.ones_like(t)) for x, t in binary]
    for name, data, max_fpr in (("mixed", binary, 0.01), ("mixed", binary, 0.3), ("no negatives", only_pos, 0.01)):
        theirs = pc.TprAtFpr(max_fpr)
        for x, t in data:
            theirs(_tensor(x), _tensor(t))
        info = theirs.avg_info
        ours = _epoch_result([{"TprAtFpr": {"max_fpr": max_fpr}}], data)
        same_threshold = (not info and np.isnan(ours["threshold"])) or \
            (info and float(info.split(",")[0].split(":")[1]) == ours["threshold"])
        rows.append(_row(f"TprAtFpr(max_fpr={max_fpr})", ours["tpr"], theirs.max_tpr, name))
        rows.append((f"TprAtFpr(max_fpr={max_fpr})", f"{name}: threshold ({info!r})", bool(same_threshold)))
    return rows


def _epoch_result(cfg: list, data: list) -> Dict[str, float]:
    from ppfreeze.metric import build_metrics
    metric = build_metrics(cfg, "m")
    metric.reset()
    for x, t in data:
        metric.update(_tensor(x), _tensor(t))
    return metric.results({})


# ----------------------------------------------------------------------------- retrieval metrics
def compare_retrieval() -> List[Row]:
    import paddle
    import ppcls.metric.metrics as pc
    from ppfreeze.retrieval.metrics import mean_average_precision, precision_at_k, recall_at_k
    rng = np.random.default_rng(1)
    rows: List[Row] = []
    # non-negative features: every cosine similarity is > 0, so PaddleClas's masked (zeroed) entries rank
    # last, as our excluded entries do; then both protocols agree exactly
    q, g = rng.random((12, 8)), rng.random((30, 8))
    ql, gl = rng.integers(0, 4, 12), rng.integers(0, 4, 30)
    qc, gc = rng.integers(0, 3, 12), rng.integers(0, 3, 30)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    keep = (ql[:, None] != gl[None, :]) | (qc[:, None] != gc[None, :])
    sims = paddle.to_tensor((qn @ gn.T * keep).astype("float32"))
    args = (sims, paddle.to_tensor(ql.reshape(-1, 1)), paddle.to_tensor(gl.reshape(-1, 1)), paddle.to_tensor(keep))
    cams = dict(query_cameras=qc, gallery_cameras=gc)
    theirs = pc.Recallk(topk=[1, 5])(*args)
    ours = recall_at_k(q, ql, g, gl, (1, 5), **cams)
    rows.append(_row("Recallk + cameras", [ours["recall1"], ours["recall5"]],
                     [theirs["recall1"], theirs["recall5"]]))
    rows.append(_row("mAP + cameras", mean_average_precision(q, ql, g, gl, **cams)["mAP"], pc.mAP()(*args)["mAP"]))
    theirs = _paddleclas_precisionk(pc, args)
    ours = precision_at_k(q, ql, g, gl, (1, 5), **cams)
    rows.append(_row("Precisionk + cameras", [ours["precision@1"], ours["precision@5"]],
                     [theirs["precision@1"], theirs["precision@5"]]))
    return rows


def _paddleclas_precisionk(pc, args) -> Dict[str, float]:
    """PaddleClas's Precisionk divides float32 by int64 ``paddle.arange``, which Paddle 3 refuses:
    run it with a float32 ``arange`` (the only change)."""
    import paddle
    arange = paddle.arange
    paddle.arange = lambda *a, **k: arange(*a, **k).astype("float32")
    try:
        return pc.Precisionk(topk=[1, 5])(*args)
    finally:
        paddle.arange = arange


# ----------------------------------------------------------------------------- losses
def compare_losses() -> List[Row]:
    from ppcls.loss.celoss import CELoss as PcCE
    from ppcls.loss.multilabelloss import MultiLabelAsymmetricLoss as PcASL, MultiLabelLoss as PcML
    from ppfreeze.loss import LOSSES
    rng = np.random.default_rng(2)
    x = rng.normal(0, 2, (6, 5)).astype("float32")
    t = (rng.random((6, 5)) > 0.5).astype("float32")
    ratio = np.tile(rng.random((1, 5)).astype("float32"), (6, 1))
    t3 = np.stack([t, ratio], axis=1)
    rows: List[Row] = []
    cases = [({}, t), ({"epsilon": 0.1}, t), ({"size_sum": True}, t), ({"weight_ratio": True}, t3),
             ({"weight_ratio": True, "size_sum": True}, t3), ({"weight_ratio": True, "size_sum": True, "epsilon": 0.1},
                                                              t3), ({"size_sum": True}, t3)]
    for kwargs, target in cases:
        theirs = float(PcML(**kwargs)(_tensor(x), _tensor(target))["MultiLabelLoss"])
        ours = float(LOSSES.build({"MultiLabelLoss": kwargs})(_tensor(x), _tensor(target)))
        rows.append(_row(f"MultiLabelLoss{kwargs}", ours, theirs))
    for kwargs in ({}, {"gamma_pos": 0, "gamma_neg": 4, "clip": 0.05, "disable_focal_loss_grad": True},
                   {"clip": 0, "reduction": "mean"}, {"gamma_pos": 2, "disable_focal_loss_grad": False}):
        xt, tt = _tensor(x), _tensor(t)
        xt.stop_gradient = False
        theirs_loss = PcASL(**kwargs)(xt, tt)["MultiLabelAsymmetricLoss"]
        theirs_loss.backward()
        theirs_grad = xt.grad.numpy().copy()
        xo = _tensor(x)
        xo.stop_gradient = False
        ours_loss = LOSSES.build({"MultiLabelAsymmetricLoss": kwargs})(xo, tt)
        ours_loss.backward()
        rows.append(_row(f"MultiLabelAsymmetricLoss{kwargs}", float(ours_loss), float(theirs_loss), "loss"))
        rows.append(_row(f"MultiLabelAsymmetricLoss{kwargs}", xo.grad.numpy(), theirs_grad, "grad"))
    ids = rng.integers(0, 5, (6, 1))
    for kwargs in ({}, {"epsilon": 0.1}, {"reduction": "sum"}, {"epsilon": 0.1, "reduction": "sum"}):
        theirs = float(PcCE(**kwargs)(_tensor(x), _tensor(ids))["CELoss"])
        ours = float(LOSSES.build({"CELoss": kwargs})(_tensor(x), _tensor(ids)))
        rows.append(_row(f"CELoss{kwargs}", ours, theirs))
    return rows


# ----------------------------------------------------------------------------- post-processing
def compare_postprocess(tmp: str) -> List[Row]:
    import ppcls.data.postprocess as pc
    import ppfreeze.data as ours_mod
    rng = np.random.default_rng(3)
    rows: List[Row] = []
    names = [f"img{i}.jpg" for i in range(6)]
    id_map = os.path.join(tmp, "labels.txt")
    with open(id_map, "w") as f:
        f.write("\n".join(f"{i} class_{i}" for i in range(26)) + "\n")

    def same(component, ours, theirs, keys):
        ok = len(ours) == len(theirs)
        for o, t in zip(ours, theirs):
            for k in keys:
                a, b = o.get(k), t.get(k)
                if isinstance(b, (list, np.ndarray)) and len(b) and isinstance(np.asarray(b).flat[0], np.floating):
                    ok &= _diff(a, b) <= 1e-6
                elif isinstance(b, (float, np.floating)):
                    ok &= abs(float(a) - float(b)) <= 1e-6
                else:
                    ok &= (list(a) if isinstance(a, (list, np.ndarray)) else a) == \
                        (list(b) if isinstance(b, (list, np.ndarray)) else b)
        rows.append((component, f"keys {keys} on logits", bool(ok)))

    two = rng.normal(0, 2, (6, 2)).astype("float32")
    same("ThreshOutput", ours_mod.ThreshOutput(0.6, label_0="no", label_1="yes")(two, names),
         pc.ThreshOutput(0.6, label_0="no", label_1="yes")(_tensor(two), names),
         ["class_ids", "scores", "label_names", "file_name"])
    many = rng.normal(0, 2, (6, 26)).astype("float32")
    same("MultiLabelThreshOutput", ours_mod.MultiLabelThreshOutput(0.5, id_map)(many, names),
         pc.MultiLabelThreshOutput(0.5, id_map)(_tensor(many), names),
         ["class_ids", "scores", "label_names", "file_name"])
    same("PersonAttribute", ours_mod.PersonAttribute()(many), pc.PersonAttribute()(_tensor(many)),
         ["attributes", "output"])
    vehicle = rng.normal(0, 2, (6, 19)).astype("float32")
    theirs = pc.VehicleAttribute(0.5, 0.6)(_tensor(vehicle), names)
    theirs = [{"attributes": r["attr"], "output": r["pred"], "file_name": r["file_name"]} for r in theirs]
    ours = ours_mod.VehicleAttribute(0.5, 0.6)(vehicle, names)
    # the colour / type names print the probability: compare the decisions and outputs
    same("VehicleAttribute", [{**r, "attributes": _strip_probs(r["attributes"])} for r in ours],
         [{**r, "attributes": _strip_probs(r["attributes"])} for r in theirs], ["attributes", "output", "file_name"])
    table = rng.normal(0, 2, (6, 6)).astype("float32")
    same("TableAttribute", ours_mod.TableAttribute()(table, names), pc.TableAttribute()(_tensor(table), names),
         ["attributes", "output", "file_name"])
    same("ScoreOutput", ours_mod.ScoreOutput(3)(many, names), pc.ScoreOutput(3)(_tensor(many), names),
         ["scores", "file_name"])
    # deploy side: exported models end in softmax / sigmoid; PaddleClas's deploy classes take probabilities
    sys.path.insert(0, os.path.join(ARGS.paddleclas, "deploy"))
    import python.postprocess as deploy
    probs = 1.0 / (1.0 + np.exp(-many.astype(np.float64)))
    same("MultiLabelThreshOutput (deploy, probabilities)", ours_mod.MultiLabelThreshOutput(0.5, id_map)(probs, names),
         deploy.MultiLabelThreshOutput(0.5, id_map)(probs, names), ["class_ids", "scores", "label_names"])
    same("PersonAttribute (deploy, probabilities)", ours_mod.PersonAttribute()(probs),
         deploy.PersonAttribute()(probs), ["attributes", "output"])
    soft = np.exp(two) / np.exp(two).sum(axis=1, keepdims=True)
    same("ThreshOutput (deploy, probabilities)", ours_mod.ThreshOutput(0.6)(soft, names),
         deploy.ThreshOutput(0.6)(soft, names), ["class_ids", "scores", "label_names", "file_name"])
    soft5 = np.exp(many[:, :5]) / np.exp(many[:, :5]).sum(axis=1, keepdims=True)
    same("ThreshOutput (deploy, 5 classes)", ours_mod.ThreshOutput(0.4, default_label_index=2,
                                                                    class_id_map_file=id_map)(soft5, names),
         deploy.ThreshOutput(0.4, default_label_index=2, class_id_map_file=id_map)(soft5, names),
         ["class_ids", "scores", "label_names"])
    return rows


def _strip_probs(text: str) -> str:
    import re
    return re.sub(r"prob: [0-9.e-]+", "prob", text)


# ----------------------------------------------------------------------------- datasets
def _write_images(root: str, rel_paths: List[str]) -> None:
    import cv2
    rng = np.random.default_rng(4)
    for rel in rel_paths:
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        cv2.imwrite(path, rng.integers(0, 256, (20, 12, 3), dtype=np.uint8))


OPS_BYTES = [{"DecodeImage": {"to_rgb": True, "channel_first": False}}, {"ResizeImage": {"size": [8, 16]}},
             {"NormalizeImage": {"scale": 1.0 / 255.0, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                                 "order": ""}}]
OPS_DECODED = OPS_BYTES[1:]


def _items(ds, n=None) -> list:
    return [ds[i] for i in range(len(ds) if n is None else n)]


def _same_items(component: str, ours: list, theirs: list, relabelled: bool = False) -> List[Row]:
    """Items agree field by field; with ``relabelled`` the labels (field 1) need only group alike.

    PaddleClas numbers relabelled identities in the iteration order of a Python set of ints,
    which is ascending only while the ids fit the set's hash table (true for Market-1501's
    ids up to 1501); ppfreeze numbers them in ascending order.
    """
    rows = [(component, "item count", len(ours) == len(theirs))]
    fields = min(len(ours[0]), len(theirs[0])) if ours and theirs else 0
    rows.append((component, f"fields per item ({len(ours[0])} vs {len(theirs[0])})", len(ours[0]) == len(theirs[0])))
    for f in range(fields):
        if f == 1 and relabelled:
            pairs = {(int(o[1]), int(t[1])) for o, t in zip(ours, theirs)}
            bijection = len(pairs) == len({p[0] for p in pairs}) == len({p[1] for p in pairs})
            rows.append((component, "field 1: same identity grouping (relabelled ids)", bijection))
            continue
        d = max(_diff(o[f], t[f]) for o, t in zip(ours, theirs))
        rows.append((component, f"field {f} max|diff| {d:.2e}", d <= 1e-5))
    return rows


def compare_datasets(tmp: str) -> List[Row]:
    from ppcls.data.dataloader.cifar import Cifar10 as PcCifar10, Cifar100 as PcCifar100
    from ppcls.data.dataloader.icartoon_dataset import ICartoonDataset as PcICartoon
    from ppcls.data.dataloader.multilabel_dataset import MultiLabelDataset as PcMultiLabel
    from ppcls.data.dataloader.person_dataset import DukeMTMC as PcDuke, Market1501 as PcMarket
    from ppcls.data.dataloader.vehicle_dataset import CompCars as PcCompCars, VeriWild as PcVeriWild
    from ppfreeze.data import DATASETS
    import ppfreeze.data.loader  # noqa: F401  (registers every dataset)
    rows: List[Row] = []

    # Market1501 / DukeMTMC folders
    market = os.path.join(tmp, "market1501", "Market-1501-v15.09.15")
    names = {"bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg", "0007_c3s3_077419_03.jpg",
                                    "0010_c6s1_000001_00.jpg", "-1_c1s1_000001_00.jpg"],
             "query": ["0001_c1s1_001051_00.jpg", "0003_c4s1_000001_00.jpg"],
             "bounding_box_test": ["0000_c1s1_000001_01.jpg", "0001_c2s1_000001_01.jpg", "-1_c3s1_0001_00.jpg"]}
    for split, files in names.items():
        _write_images(market, [os.path.join(split, f) for f in files])
    duke = os.path.join(tmp, "dukemtmc", "DukeMTMC-reID", "bounding_box_train")
    _write_images(duke, ["0005_c8_f0001.jpg", "0001_c1_f0002.jpg", "0005_c2_f0003.jpg"])
    for split in names:
        ours = DATASETS.build({"Market1501": {"image_root": tmp, "cls_label_path": split,
                                              "transform_ops": OPS_DECODED}})
        theirs = PcMarket(tmp, split, OPS_DECODED)
        rows += _same_items(f"Market1501[{split}]", _items(ours), _items(theirs), relabelled="train" in split)
    ours = DATASETS.build({"DukeMTMC": {"image_root": tmp, "cls_label_path": "bounding_box_train",
                                        "transform_ops": OPS_DECODED}})
    theirs = PcDuke(tmp, "bounding_box_train", OPS_DECODED)
    order = np.argsort(theirs.images)   # PaddleClas keeps glob's (unsorted) order
    rows += _same_items("DukeMTMC[train]", _items(ours), [theirs[int(i)] for i in order], relabelled=True)

    # VeriWild with and without cameras; CompCars with boxes
    files = [f"v/{i}.jpg" for i in range(5)]
    _write_images(tmp, files)
    for name, lines in (("veri3.txt", [f"{f} {10 + i % 2} {i % 3}" for i, f in enumerate(files)]),
                        ("veri2.txt", [f"{f} {10 + i % 3}" for i, f in enumerate(files)])):
        path = os.path.join(tmp, name)
        with open(path, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        for relabel in (False, True):
            ours = DATASETS.build({"VeriWild": {"image_root": tmp, "cls_label_path": path, "transform_ops": OPS_BYTES,
                                                "relabel": relabel}})
            rows += _same_items(f"VeriWild[{name}, relabel={relabel}]", _items(ours),
                                _items(PcVeriWild(tmp, path, OPS_BYTES, relabel=relabel)), relabelled=relabel)
    label_root = os.path.join(tmp, "boxes")
    os.makedirs(os.path.join(label_root, "v"))
    for i, f in enumerate(files):
        with open(os.path.join(label_root, f.replace(".jpg", ".txt")), "w") as fh:
            fh.write(f"1\n2\n{i} 1 {8 + i % 3} {15 + i}\n")
    path = os.path.join(tmp, "cars.txt")
    with open(path, "w") as fh:
        fh.write("\n".join(f"{f} {i % 2}" for i, f in enumerate(files)) + "\n")
    for crop in (False, True):
        ours = DATASETS.build({"CompCars": {"image_root": tmp, "cls_label_path": path, "label_root": label_root,
                                            "bbox_crop": crop, "transform_ops": OPS_DECODED}})
        rows += _same_items(f"CompCars[bbox_crop={crop}]", _items(ours),
                            _items(PcCompCars(tmp, path, label_root, OPS_DECODED, crop)))

    # MultiLabelDataset (with and without label_ratio), ICartoonDataset
    path = os.path.join(tmp, "multi.txt")
    rng = np.random.default_rng(5)
    with open(path, "w") as fh:
        fh.write("\n".join(f"{f}\t{','.join(str(int(v)) for v in rng.integers(0, 2, 4))}" for f in files) + "\n")
    for ratio in (False, True):
        ours = DATASETS.build({"MultiLabelDataset": {"image_root": tmp, "cls_label_path": path,
                                                     "transform_ops": OPS_BYTES, "label_ratio": ratio}})
        rows += _same_items(f"MultiLabelDataset[label_ratio={ratio}]", _items(ours),
                            _items(PcMultiLabel(tmp, path, OPS_BYTES, label_ratio=ratio)))
    path = os.path.join(tmp, "cartoon.txt")
    with open(path, "w") as fh:
        fh.write("\n".join(f"{f}\t{i}" for i, f in enumerate(files)) + "\n")
    ours = DATASETS.build({"ICartoonDataset": {"image_root": tmp, "cls_label_path": path, "transform_ops": OPS_BYTES}})
    rows += _same_items("ICartoonDataset", _items(ours), _items(PcICartoon(tmp, path, OPS_BYTES)))

    # CIFAR tarballs (python-version layout, protocol-2 pickles like the real files)
    for cls_ours, cls_theirs, tarball, members, label_key in (
            ("Cifar10", PcCifar10, "cifar-10-python.tar.gz", ["cifar-10-batches-py/data_batch_1",
                                                               "cifar-10-batches-py/data_batch_2",
                                                               "cifar-10-batches-py/test_batch"], b"labels"),
            ("Cifar100", PcCifar100, "cifar-100-python.tar.gz", ["cifar-100-python/train", "cifar-100-python/test"],
             b"fine_labels")):
        path = os.path.join(tmp, tarball)
        write_cifar_tarball(path, members, label_key, 10 if cls_ours == "Cifar10" else 100)
        ops = [{"NormalizeImage": {"scale": 1.0 / 255.0, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                                   "order": "hwc"}}]
        for mode in ("train", "test"):
            for backend in ("cv2", "pil"):
                ours = DATASETS.build({cls_ours: {"data_file": path, "mode": mode, "backend": backend,
                                                  "transform_ops": ops}}, seed=0)
                theirs = cls_theirs(path, mode, download=False, backend=backend, transform_ops=ops)
                rows += _same_items(f"{cls_ours}[{mode}, {backend}]", _items(ours), _items(theirs))
    return rows


def write_cifar_tarball(path: str, members: List[str], label_key: bytes, classes: int) -> None:
    """A tiny tarball laid out like the python-version CIFAR download (4 images per batch)."""
    rng = np.random.default_rng(6)
    with tarfile.open(path, "w:gz") as tar:
        for name in members:
            batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                     label_key: [int(v) for v in rng.integers(0, classes, 4)], b"batch_label": b"x"}
            data = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def main() -> int:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paddleclas", required=True, help="PaddleClas checkout")
    ARGS = parser.parse_args()
    sys.path.insert(0, ARGS.paddleclas)
    from ppcls.utils import logger
    logger.init_logger()
    rows: List[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for section in (compare_metrics, compare_retrieval, compare_losses):
            rows += section()
        rows += compare_postprocess(tmp)
        rows += compare_datasets(tmp)
    width = max(len(r[0]) for r in rows)
    for component, what, ok in rows:
        print(f"{'OK  ' if ok else 'DIFF'} {component:<{width}}  {what}")
    failed = [r for r in rows if not r[2]]
    print(f"{len(rows) - len(failed)}/{len(rows)} agree")
    return 1 if failed else 0


ARGS: Any = None

if __name__ == "__main__":
    sys.exit(main())
