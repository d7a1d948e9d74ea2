"""Run PaddleClas's own config files through ``tools/train.py``: 2 iterations and an evaluation each.

For every ``ppcls/configs/**.yaml`` of a PaddleClas checkout whose models are all registered in
ppfreeze's ``MODELS`` ("in scope"), the unchanged file is trained with ``tools/train.py -c <file>``
in a subprocess, with only these ``-o`` overrides:

- data paths: each dataset's ``image_root`` / ``cls_label_path`` / ``sample_list_path`` /
  ``label_root`` / ``data_file`` point at tiny data generated here in that dataset's format;
- ``Global.device=cpu``;
- the image size: every crop / resize size of the transform ops, ``MultiScaleSampler.scales`` and
  ``Global.image_shape`` scaled down so that the crop is ``--size`` px (models with a fixed
  ``input_size`` keep their size);
- ``class_num`` (Arch / Head / Backbone / Global) where it is above 1000 (huge margin heads);
- sampler ``batch_size`` (small; identity samplers keep ``num_instances`` / ``sample_per_id``),
  ``MultiScaleSampler.first_bs``, loader ``num_workers=0``;
- the run length: ``Global.epochs=1``, ``Global.max_train_steps=2``; where the config evaluates
  (it has ``DataLoader.Eval``): ``Global.eval_during_train=true``, ``eval_interval=1``,
  ``start_eval_epoch=0`` (so epoch 1 evaluates), ``Global.max_eval_steps=2``;
  ``Global.output_dir`` to a temporary directory;
- ``Global.pretrained_model`` / ``pretrained`` keys of ``Arch`` set to null / false where they ask
  for a download (``true``, a URL, or a path that does not exist): ppfreeze downloads nothing.
  The members of a ``DistillationModel`` (``Arch.models``), often a frozen teacher that ppfreeze
  refuses to freeze at random values, get the local file a user would have instead: random
  weights with the member's keys, saved by this script.

A config passes when ``tools/train.py`` exits 0 and its ``train.log`` shows the last of the 2
training iterations and, where the config evaluates, an ``[Eval]`` result. The report
(``report.json`` and ``report.md``, failures grouped by cause) goes to ``--out``.

    OMP_NUM_THREADS=1 python tools/dev/run_paddleclas_configs.py --paddleclas /work/pc --out /tmp/pcrun
    python tools/dev/run_paddleclas_configs.py --paddleclas /work/pc --match 'PULC/.*PPLCNet' --out /tmp/x

Configs are run one at a time (the machine may be shared).
"""
from __future__ import annotations

import argparse
import collections
import glob
import inspect
import io
import json
import os
import pickle
import random
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)

# Model names that wrap other models: in scope only once ppfreeze registers them.
WRAPPERS = ("RecModel", "DistillationModel", "AttentionModel")
CLASSES = 4            # classes (identities) of the generated single-label data
MAX_CLASS_NUM = 1000   # class_num above this is lowered (margin heads with 10^5 classes)
SMALL_CLASS_NUM = 10
TRAIN_STEPS = 2
EVAL_STEPS = 2
BATCH = 4
IMAGE_HW = (72, 96)    # generated pictures (height, width): non-square, above the default crop
# transform-op arguments that are sizes in pixels (scaled with the crop)
SIZE_ARGS = {"CenterCrop": ("size",), "CropImage": ("size",), "CropImageAtRatio": ("size",),
             "Padv2": ("size",), "RandCropImage": ("size", "progress_size"), "RandCropImageV2": ("size",),
             "RandomCrop": ("size",), "RandomCropImage": ("size",), "RandomResizedCrop": ("size",),
             "Resize": ("size",), "ResizeImage": ("size", "resize_short"), "TimmAutoAugment": ("img_size",)}
CROP_OPS = ("CropImage", "RandCropImage", "RandCropImageV2", "RandomCropImage", "RandomResizedCrop",
            "CenterCrop", "RandomCrop", "CropImageAtRatio")


# ----------------------------------------------------------------------------- scope
def model_names(arch: Any) -> List[str]:
    """Every model name an ``Arch`` section names: its name, its Backbone's, a wrapper's models'."""
    if not isinstance(arch, dict):
        return []
    names = [arch["name"]] if isinstance(arch.get("name"), str) else []
    names += model_names(arch.get("Backbone"))
    for entry in arch.get("models") or []:
        if isinstance(entry, dict):
            for sub in entry.values():
                names += model_names(sub)
    return names


def _has_train_loader(cfg: Dict[str, Any]) -> bool:
    train = (cfg.get("DataLoader") or {}).get("Train")
    return isinstance(train, dict) and isinstance(train.get("dataset"), dict)


def classify_scope(cfg: Dict[str, Any], registered: Sequence[str]) -> Tuple[str, List[str]]:
    """("in", []), ("wrapper", [unregistered wrappers]), ("out", [unregistered models]) or
    ("no_train", [missing sections]) for a config of our models without ``DataLoader.Train``,
    ``Loss.Train`` or ``Optimizer``: PaddleClas's own ``tools/train.py`` cannot train it either
    (inference-only configs such as its gallery-to-FC or practical-model files)."""
    if not isinstance(cfg, dict) or not isinstance(cfg.get("Arch"), dict):
        return "out", ["<no Arch section: not a training config>"]
    missing = [n for n in model_names(cfg["Arch"]) if n not in registered]
    if not missing:
        lacking = [k for k, present in (("DataLoader.Train", _has_train_loader(cfg)),
                                         ("Loss.Train", bool((cfg.get("Loss") or {}).get("Train"))),
                                         ("Optimizer", bool(cfg.get("Optimizer")))) if not present]
        return ("no_train", lacking) if lacking else ("in", [])
    others = [n for n in missing if n not in WRAPPERS]
    return ("out", others) if others else ("wrapper", missing)


# ----------------------------------------------------------------------------- tiny data
def _write_image(path: str, rng: np.random.Generator) -> None:
    import cv2
    os.makedirs(os.path.dirname(path), exist_ok=True)
    h, w = IMAGE_HW
    img = np.zeros((h, w, 3), np.uint8) + rng.integers(0, 256, 3, dtype=np.uint8)
    y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
    img[y:y + h // 2, x:x + w // 2] = rng.integers(0, 256, 3, dtype=np.uint8)
    cv2.imwrite(path, img)


class TinyData:
    """Tiny datasets in PaddleClas's formats under ``root``; one per distinct original location."""

    def __init__(self, root: str, per_class: int = 3):
        self.root = root
        self.per_class = per_class
        self.rng = np.random.default_rng(0)
        self.made: Dict[Any, Dict[str, str]] = {}

    def _images(self, sub: str, labels: Sequence[int]) -> List[str]:
        rels = []
        for i, label in enumerate(labels):
            rel = f"images/{label}/{i}.jpg"
            _write_image(os.path.join(self.root, sub, rel), self.rng)
            rels.append(rel)
        return rels

    def _labels(self, classes: int) -> List[int]:
        return [c for c in range(classes) for _ in range(self.per_class)]

    def for_dataset(self, ds: Dict[str, Any], class_num: Optional[int]) -> Dict[str, Any]:
        """The overrides (dataset key -> value) that point ``ds`` at generated data."""
        name = ds.get("name")
        origin = (name, ds.get("image_root"), ds.get("cls_label_path"), ds.get("sample_list_path"),
                  ds.get("data_file"), ds.get("delimiter"), str(ds.get("sample_per_label")), class_num)
        if origin in self.made:
            return self.made[origin]
        sub = f"d{len(self.made)}"
        base = os.path.join(self.root, sub)
        os.makedirs(base, exist_ok=True)
        make = getattr(self, f"_make_{name}", None)
        out = make(ds, sub, base, class_num) if make else None
        if out is None:
            out = {}
        self.made[origin] = out
        return out

    def _list(self, base: str, lines: List[str], name: str = "list.txt") -> str:
        path = os.path.join(base, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def _make_ImageNetDataset(self, ds, sub, base, class_num):
        labels = self._labels(min(class_num or CLASSES, CLASSES))
        rels = self._images(sub, labels)
        delim = ds.get("delimiter") or " "
        return {"image_root": base, "cls_label_path": self._list(base, [f"{r}{delim}{l}" for r, l in zip(rels, labels)])}

    _make_MultiScaleDataset = _make_ImageNetDataset

    def _make_ICartoonDataset(self, ds, sub, base, class_num):
        labels = self._labels(min(class_num or CLASSES, CLASSES))
        rels = self._images(sub, labels)
        return {"image_root": base, "cls_label_path": self._list(base, [f"{r}\t{l}" for r, l in zip(rels, labels)])}

    def _make_MultiLabelDataset(self, ds, sub, base, class_num):
        n = class_num or CLASSES
        rels = self._images(sub, range(CLASSES * self.per_class))
        lines = []
        for i, r in enumerate(rels):
            vec = (self.rng.random(n) > 0.5).astype(int)
            vec[i % n] = 1   # every class gets positives and negatives
            lines.append(f"{r}\t{','.join(map(str, vec))}")
        return {"image_root": base, "cls_label_path": self._list(base, lines)}

    def _make_VeriWild(self, ds, sub, base, class_num):
        labels = self._labels(min(class_num or CLASSES, CLASSES))
        rels = self._images(sub, labels)
        lines = [f"{r} {l} {i % 2}" for i, (r, l) in enumerate(zip(rels, labels))]
        return {"image_root": base, "cls_label_path": self._list(base, lines)}

    def _make_CompCars(self, ds, sub, base, class_num):
        labels = self._labels(min(class_num or CLASSES, CLASSES))
        rels = self._images(sub, labels)
        label_root = os.path.join(base, "boxes")
        for r in rels:
            path = os.path.join(label_root, os.path.splitext(r)[0] + ".txt")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(f"1\n1\n2 3 {IMAGE_HW[1] - 4} {IMAGE_HW[0] - 2}\n")
        return {"image_root": base, "cls_label_path": self._list(base, [f"{r} {l}" for r, l in zip(rels, labels)]),
                "label_root": label_root}

    def _make_CustomLabelDataset(self, ds, sub, base, class_num):
        rels = self._images(sub, range(CLASSES * self.per_class))
        return {"image_root": base, "sample_list_path": self._list(base, rels)}

    def _reid_folder(self, ds, base, folder, camera_count):
        split = ds.get("cls_label_path") or "bounding_box_train"
        path = os.path.join(base, folder, split)
        for pid in range(1, CLASSES + 1):
            for k in range(self.per_class):
                _write_image(os.path.join(path, f"{pid:04d}_c{k % camera_count + 1}s1_{k:06d}_00.jpg"), self.rng)
        return {"image_root": base}

    def _make_Market1501(self, ds, sub, base, class_num):
        return self._reid_folder(ds, base, os.path.join("market1501", "Market-1501-v15.09.15"), 2)

    def _make_DukeMTMC(self, ds, sub, base, class_num):
        return self._reid_folder(ds, base, os.path.join("dukemtmc", "DukeMTMC-reID"), 2)

    def _cifar(self, ds, base, tarball, members, label_key, classes):
        path = os.path.join(base, tarball)
        # semi-supervised configs draw sample_per_label labeled images per class
        # (and need every class of the dataset present)
        wanted = ds.get("sample_per_label")
        drawn = isinstance(wanted, int) and not isinstance(wanted, bool)
        per_class, present = (max(self.per_class, wanted), classes) if drawn else (self.per_class, CLASSES)
        train_member = members[0]
        with tarfile.open(path, "w:gz", compresslevel=1) as tar:
            for name in members:
                # only the training member needs sample_per_label images per class
                count = present * per_class if name == train_member else CLASSES * self.per_class
                labels = [c % present for c in range(count)]
                batch = {b"data": self.rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8),
                         label_key: labels, b"batch_label": b"tiny"}
                data = pickle.dumps(batch, protocol=2)
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return {"data_file": path}

    def _make_Cifar10(self, ds, sub, base, class_num):
        return self._cifar(ds, base, "cifar-10-python.tar.gz", ["cifar-10-batches-py/data_batch_1",
                                                            "cifar-10-batches-py/test_batch"], b"labels", 10)

    def _make_Cifar100(self, ds, sub, base, class_num):
        return self._cifar(ds, base, "cifar-100-python.tar.gz", ["cifar-100-python/train", "cifar-100-python/test"],
                           b"fine_labels", 100)


# ----------------------------------------------------------------------------- overrides
def loader_sections(node: Any, path: str = "DataLoader") -> Iterator[Tuple[str, Dict[str, Any]]]:
    """``(key path, section)`` of every loader section (a mapping with a ``dataset``)."""
    if not isinstance(node, dict):
        return
    if isinstance(node.get("dataset"), dict):
        yield path, node
    for k, v in node.items():
        if k not in ("dataset", "sampler", "loader") and isinstance(v, dict):
            yield from loader_sections(v, f"{path}.{k}")


def _class_num_keys(cfg: Dict[str, Any]) -> List[Tuple[str, Any]]:
    """(key path, value) of every class_num of Global / Arch / its Head, Backbone and wrapped models."""
    found = []

    def walk(node: Any, path: str) -> None:
        if not isinstance(node, dict):
            return
        for k, v in node.items():
            if k in ("class_num", "num_classes") and isinstance(v, int) and not isinstance(v, bool):
                found.append((f"{path}.{k}", v))
            elif isinstance(v, dict):
                walk(v, f"{path}.{k}")
            elif isinstance(v, list):
                for i, item in enumerate(v):
                    walk(item, f"{path}.{k}.{i}")
    if isinstance(cfg.get("Global"), dict) and isinstance(cfg["Global"].get("class_num"), int):
        found.append(("Global.class_num", cfg["Global"]["class_num"]))
    walk(cfg.get("Arch"), "Arch")
    return found


def config_class_num(cfg: Dict[str, Any]) -> Optional[int]:
    """The model's class count as the config gives it (the classifier's, else Global's)."""
    for key, value in _class_num_keys(cfg):
        if key.endswith("class_num"):
            return value
    return None


def native_size(cfg: Dict[str, Any]) -> Optional[int]:
    """The smaller side of the training crop: Global.image_shape, else the first crop op's size."""
    shape = (cfg.get("Global") or {}).get("image_shape")
    if isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) for v in shape):
        return min(shape[1:])
    for _, section in loader_sections(cfg.get("DataLoader") or {}):
        for op in section["dataset"].get("transform_ops") or []:
            if isinstance(op, dict) and len(op) == 1:
                name, args = next(iter(op.items()))
                if name in CROP_OPS and isinstance(args, dict) and args.get("size") is not None:
                    size = args["size"]
                    return min(size) if isinstance(size, list) else int(size)
    return None


def _scaled(value: Any, factor: float) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return max(1, int(round(value * factor)))
    if isinstance(value, list):
        return [_scaled(v, factor) for v in value]
    return value


def _fixed_input_size(cfg: Dict[str, Any], registered) -> bool:
    """A named model has a fixed input size (class attribute ``input_size`` or an ``img_size`` argument)."""
    from ppfreeze.arch import MODELS
    for name in model_names(cfg.get("Arch")):
        if name in WRAPPERS or name not in registered:
            continue
        factory = MODELS.get(name)
        if getattr(factory, "input_size", None):
            return True
        try:
            if "img_size" in inspect.signature(factory).parameters:
                return True
        except (TypeError, ValueError):
            pass
    return False


def _min_input_size(cfg: Dict[str, Any], registered) -> int:
    from ppfreeze.arch import MODELS
    sizes = [getattr(MODELS.get(n), "min_input_size", 32) for n in model_names(cfg.get("Arch"))
             if n in registered and n not in WRAPPERS]
    return max([32] + [s for s in sizes if isinstance(s, int)])


def _pretrained_overrides(cfg: Dict[str, Any]) -> List[Tuple[str, Any, str]]:
    """(key, new value, why) for every pretrained setting that asks for a file we do not have."""
    out = []

    def needs_download(v: Any) -> bool:
        if v is True:
            return True
        return isinstance(v, str) and (v.startswith(("http://", "https://")) or not _weights_exist(v))

    g = cfg.get("Global") or {}
    for key in ("pretrained_model", "checkpoints"):
        if g.get(key) and needs_download(g[key]):
            out.append((f"Global.{key}", None, f"{g[key]!r} is a download"))

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "pretrained" and needs_download(v):
                    out.append((f"{path}.{k}", False, f"{v!r} is a download"))
                elif k == "pretrained_list" and isinstance(v, list) and any(needs_download(x) for x in v):
                    out.append((f"{path}.{k}", None, f"{v!r} are downloads"))
                else:
                    walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{path}.{i}")
    walk(cfg.get("Arch"), "Arch")
    # a frozen distillation member without weights (PaddleClas's configs leave the teacher's file
    # to the user): it gets the stand-in file too (build_overrides)
    arch = cfg.get("Arch") or {}
    frozen = arch.get("freeze_params_list") or []
    for i, member in enumerate(arch.get("models") or []):
        if i < len(frozen) and frozen[i] is True and isinstance(member, dict) and len(member) == 1:
            (name, model_cfg), = member.items()
            if isinstance(model_cfg, dict) and not model_cfg.get("pretrained"):
                out.append((f"Arch.models.{i}.{name}.pretrained", None, "no weights for a frozen member"))
    return out


def _node_at(cfg: Dict[str, Any], key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _stand_in_weights(member: Dict[str, Any], out_dir: str, key: str) -> str:
    """Save a randomly initialised model built from one ``Arch.models`` entry; its path (no suffix)."""
    import paddle
    from ppfreeze.arch import build_model
    (name, model_cfg), = member.items() if "name" not in member else [(None, member)]
    cfg = {k: v for k, v in dict(model_cfg if name else member).items() if k != "pretrained"}
    if name:
        cfg["name"] = name
    for k in ("class_num", "num_classes"):
        if isinstance(cfg.get(k), int) and cfg[k] > MAX_CLASS_NUM:
            cfg[k] = SMALL_CLASS_NUM
    path = os.path.join(out_dir, "stand_in_" + re.sub(r"\W", "_", key))
    paddle.save(build_model(cfg, key).state_dict(), path + ".pdparams")
    return path


def _weights_exist(path: str) -> bool:
    return any(os.path.isfile(path + ext) for ext in ("", ".pdparams"))


def build_overrides(cfg: Dict[str, Any], data: TinyData, out_dir: str, size: int,
                    registered) -> Tuple[List[str], List[str]]:
    """The ``-o`` overrides for one config and notes on the download ones."""
    o: List[str] = []
    notes: List[str] = []

    def put(key: str, value: Any) -> None:
        o.append(f"{key}={json.dumps(value)}")

    g = cfg.get("Global") or {}
    loaders = dict(loader_sections(cfg.get("DataLoader") or {}))
    evaluates = any(k.startswith("DataLoader.Eval") for k in loaders)
    put("Global.device", "cpu")
    put("Global.epochs", 1)
    put("Global.max_train_steps", TRAIN_STEPS)
    put("Global.output_dir", os.path.join(out_dir, "output"))
    if evaluates:
        put("Global.eval_during_train", True)
        put("Global.eval_interval", 1)
        put("Global.start_eval_epoch", 0)
        put("Global.max_eval_steps", EVAL_STEPS)
    for key, value, why in _pretrained_overrides(cfg):
        if key.startswith("Arch.models.") and key.endswith(".pretrained"):
            # a distillation member (often a frozen teacher): the user has the file PaddleClas would
            # download; a stand-in with the model's keys takes its place (random values)
            value = _stand_in_weights(_node_at(cfg, key.rsplit(".", 1)[0]), out_dir, key)
            why += "; replaced by a local stand-in file of random weights with the model's keys"
        put(key, value)
        notes.append(f"{key}: {why}")
    # class_num
    class_num = config_class_num(cfg)
    for key, value in _class_num_keys(cfg):
        if value > MAX_CLASS_NUM:
            put(key, SMALL_CLASS_NUM)
    if class_num and class_num > MAX_CLASS_NUM:
        class_num = SMALL_CLASS_NUM
    # image size
    native = native_size(cfg)
    target = max(size, _min_input_size(cfg, registered))
    factor = 1.0
    if native and native > target and not _fixed_input_size(cfg, registered):
        factor = target / native
    shape = g.get("image_shape")
    if factor < 1 and isinstance(shape, list) and len(shape) == 3:
        put("Global.image_shape", [shape[0]] + _scaled(shape[1:], factor))
    for key, section in loaders.items():
        ds = section["dataset"]
        for dk, dv in data.for_dataset(ds, class_num).items():
            put(f"{key}.dataset.{dk}", dv)
        for ops_key, ops in ds.items():
            if not (ops_key.startswith("transform_ops") and isinstance(ops, list)):
                continue
            for i, op in enumerate(ops):
                if not (isinstance(op, dict) and len(op) == 1):
                    continue
                name, args = next(iter(op.items()))
                for arg in SIZE_ARGS.get(name, ()):
                    if factor < 1 and isinstance(args, dict) and args.get(arg) is not None:
                        put(f"{key}.dataset.{ops_key}.{i}.{name}.{arg}", _scaled(args[arg], factor))
        put_sampler(section.get("sampler"), f"{key}.sampler", factor, put)
        if isinstance(section.get("loader"), dict) and "num_workers" in section["loader"]:
            put(f"{key}.loader.num_workers", 0)
    return o, notes


def put_sampler(sampler: Any, key: str, factor: float, put) -> None:
    """Small batches; identity samplers keep their images per identity (P = 2 identities)."""
    if not isinstance(sampler, dict):
        return
    name = sampler.get("name")
    if name == "MultiScaleSampler":
        put(f"{key}.first_bs", BATCH)
        if factor < 1 and sampler.get("scales"):
            put(f"{key}.scales", _scaled(sampler["scales"], factor))
        return
    per_id = sampler.get("num_instances") or sampler.get("sample_per_id")
    if isinstance(per_id, int) and per_id > 0:
        if per_id > 3:
            put(f"{key}.{'num_instances' if 'num_instances' in sampler else 'sample_per_id'}", 2)
            per_id = 2
        put(f"{key}.batch_size", 2 * per_id)
    elif "batch_size" in sampler:
        put(f"{key}.batch_size", BATCH)


# ----------------------------------------------------------------------------- running
def first_error(stderr: str, stdout: str) -> str:
    """The line that says why a run failed: ppfreeze's one-line error, else the exception line."""
    for line in stderr.splitlines():
        if line.startswith("ppfreeze:"):
            return line.strip()
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_.]*(Error|Exception|Interrupt)\b", line.strip()):
            return line.strip()
    tail = lines or [ln for ln in stdout.splitlines() if ln.strip()]
    return tail[-1].strip() if tail else "(no output)"


def cause_of(error: str) -> str:
    """A failure's cause, with file paths, numbers and quoted values removed so alike errors group."""
    text = re.sub(r"^ppfreeze: (configuration error|training stopped|data integrity error|error): ", "", error)
    text = re.sub(r"(/[\w.@+-]+)+", "<path>", text)
    text = re.sub(r"\(.*", "", text)
    text = re.sub(r"\d+(\.\d+)?", "N", text)
    return text.strip()[:160] or error[:160]


def check_log(log: str, evaluates: bool) -> Optional[str]:
    """Why a run that exited 0 still does not count (None when it does)."""
    if f"[Iter: {TRAIN_STEPS - 1}/{TRAIN_STEPS}]" not in log:
        return f"train.log shows no training iteration {TRAIN_STEPS - 1}/{TRAIN_STEPS}"
    if evaluates and "[Eval]" not in log:
        return "train.log shows no [Eval] result"
    return None


def run_one(path: str, rel: str, registered, args) -> Dict[str, Any]:
    from ppfreeze.config.loader import _load_with_bases
    cfg = _load_with_bases(path)
    work = tempfile.mkdtemp(prefix="pcrun_", dir=args.work)
    data = TinyData(os.path.join(work, "data"))
    overrides, notes = build_overrides(cfg, data, work, args.size, registered)
    evaluates = any(k.startswith("DataLoader.Eval") for k, _ in loader_sections(cfg.get("DataLoader") or {}))
    cmd = [args.python, os.path.join(ROOT, "tools", "train.py"), "-c", path]
    for item in overrides:
        cmd += ["-o", item]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    tic = time.time()
    rc, out, err = _run_limited(cmd, args.paddleclas, env, args.timeout)
    seconds = round(time.time() - tic, 1)
    log = ""
    for log_path in glob.glob(os.path.join(work, "output", "*", "train.log")):
        with open(log_path, encoding="utf-8", errors="replace") as f:
            log += f.read()
    if rc is None:
        status, error = "timeout", f"timed out after {args.timeout} s"
    elif rc != 0:
        status, error = "fail", first_error(err, out)
    else:
        error = check_log(log, evaluates)
        status = "pass" if error is None else "fail"
    warnings = sorted({m.group(1) for m in re.finditer(r"WARNING: (.*)", log)})
    result = {"config": rel, "status": status, "seconds": seconds, "first_error": error,
              "cause": cause_of(error) if error else None, "exit_code": rc, "evaluates": evaluates,
              "download_overrides": notes, "warnings": warnings, "command": _shell(cmd)}
    if args.keep or (status != "pass" and args.keep_failed):
        result["work_dir"] = work
        with open(os.path.join(work, "stderr.txt"), "w") as f:
            f.write(err)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return result


def _run_limited(cmd: List[str], cwd: str, env: Dict[str, str], timeout: int) -> Tuple[Optional[int], str, str]:
    """(exit code or None on timeout, stdout, stderr); the run gets its own process group, which is
    killed as a whole on timeout (so no child keeps the pipes open)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return None, _text(out), _text(err)


def _text(b: Any) -> str:
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else (b or "")


def _shell(cmd: List[str]) -> str:
    import shlex
    return " ".join(shlex.quote(c) for c in cmd)


# ----------------------------------------------------------------------------- report
def write_report(results: List[Dict[str, Any]], skipped: Dict[str, List], args, out: str,
                 in_scope: Optional[List[str]] = None) -> Dict[str, Any]:
    """Write report.json / report.md; ``in_scope`` (all in-scope configs) lets a partial run list what it did not run."""
    ran = [r for r in results]
    passed = [r for r in ran if r["status"] == "pass"]
    done = {r["config"] for r in ran}
    not_run = [rel for rel in (in_scope or []) if rel not in done]
    summary = {"paddleclas": args.paddleclas, "match": args.match, "size": args.size,
               "in_scope": len(ran) + len(not_run), "ran": len(ran), "passed": len(passed),
               "pass_rate": round(len(passed) / len(ran), 4) if ran else None,
               "date": time.strftime("%Y-%m-%d"), "python": args.python}
    report = {"summary": summary, "results": results, "not_run": not_run, "wrapper_not_registered": skipped["wrapper"],
              "out_of_scope": skipped["out"], "no_train_section": skipped["no_train"]}
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(markdown(report))
    return summary


def markdown(report: Dict[str, Any]) -> str:
    s = report["summary"]
    lines = [f"Passed **{s['passed']} / {s['ran']}** configs run ({100 * (s['pass_rate'] or 0):.1f} %) of "
             f"{s['in_scope']} in scope, {s['date']}, crop {s['size']} px.", ""]
    failed = [r for r in report["results"] if r["status"] != "pass"]
    if failed:
        by_cause = collections.defaultdict(list)
        for r in failed:
            by_cause[r["cause"]].append(r)
        lines += ["| cause | configs | first error (one example) |", "|---|---|---|"]
        for cause, rs in sorted(by_cause.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            names = ", ".join(f"`{r['config']}`" for r in rs)
            example = rs[0]["first_error"].replace("|", "\\|")
            lines.append(f"| {cause.replace('|', '/')} ({len(rs)}) | {names} | {example} |")
        lines.append("")
    lines += ["| config | result | seconds | ppfreeze commit |", "|---|---|---:|---|"]
    lines += [f"| `{r['config']}` | {r['status']} | {r['seconds']} | {r.get('commit', '')} |"
              for r in sorted(report["results"], key=lambda r: r["config"])]
    if report.get("not_run"):
        lines += ["", f"In scope but not run in this measurement ({len(report['not_run'])} configs):", ""]
        lines += [f"- `{c}`" for c in report["not_run"]]
    if report["wrapper_not_registered"]:
        lines += ["", f"Not run: the wrapper model is not registered yet "
                      f"({len(report['wrapper_not_registered'])} configs):", ""]
        lines += [f"- `{c}` ({', '.join(sorted(set(m)))})" for c, m in report["wrapper_not_registered"]]
    if report["no_train_section"]:
        lines += ["", "Not run: not training configs (PaddleClas's train.py cannot train them either), lacking:", ""]
        lines += [f"- `{c}` ({', '.join(m)})" for c, m in report["no_train_section"]]
    return "\n".join(lines) + "\n"


def _previous_passes(out: str) -> Dict[str, Dict[str, Any]]:
    path = os.path.join(out, "report.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return {r["config"]: r for r in json.load(f)["results"] if r["status"] == "pass"}


def _commit() -> str:
    """The ppfreeze commit running the configs (``+dirty`` with uncommitted changes)."""
    try:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paddleclas", required=True, help="PaddleClas checkout (its ppcls/configs are run)")
    parser.add_argument("--match", default=None, help="only configs whose path under ppcls/configs matches REGEX")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per config")
    parser.add_argument("--size", type=int, default=64, help="training crop in pixels (smaller side)")
    parser.add_argument("--out", required=True, help="directory for report.json / report.md")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs tools/train.py")
    parser.add_argument("--work", default=None, help="parent of the per-config temporary directories")
    parser.add_argument("--keep", action="store_true", help="keep every run's directory")
    parser.add_argument("--keep-failed", action="store_true", help="keep the directories of failed runs")
    parser.add_argument("--list", action="store_true", help="print the in-scope configs and exit")
    parser.add_argument("--shuffle", type=int, default=None, metavar="SEED",
                        help="run the configs in a seeded random order, so that a run stopped early has measured "
                             "a uniform sample of them (the report counts what was not run)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="keep the passes of an existing OUT/report.json and run only the other in-scope "
                             "configs (each result records the ppfreeze commit that produced it)")
    args = parser.parse_args(argv)
    args.paddleclas = os.path.abspath(args.paddleclas)
    from ppfreeze.arch import MODELS
    from ppfreeze.config.loader import yaml_load
    registered = set(MODELS.names())
    config_root = os.path.join(args.paddleclas, "ppcls", "configs")
    os.makedirs(args.out, exist_ok=True)
    in_scope, skipped = [], {"wrapper": [], "out": [], "no_train": []}
    for path in sorted(glob.glob(os.path.join(config_root, "**", "*.yaml"), recursive=True)):
        rel = os.path.relpath(path, config_root)
        if args.match and not re.search(args.match, rel):
            continue
        with open(path, encoding="utf-8") as f:
            scope, missing = classify_scope(yaml_load(f), registered)
        if scope == "in":
            in_scope.append((path, rel))
        else:
            skipped[scope].append((rel, missing))
    print(f"{len(in_scope)} in scope, {len(skipped['wrapper'])} wait for a wrapper model, "
          f"{len(skipped['out'])} out of scope, {len(skipped['no_train'])} are not training configs", flush=True)
    if args.list:
        print("\n".join(rel for _, rel in in_scope))
        return 0
    kept = _previous_passes(args.out) if args.retry_failed else {}
    commit = _commit()
    results = [kept[rel] for _, rel in in_scope if rel in kept]
    todo = [(path, rel) for path, rel in in_scope if rel not in kept]
    if args.shuffle is not None:
        random.Random(args.shuffle).shuffle(todo)
    if kept:
        print(f"keeping {len(results)} passes from {args.out}/report.json, running {len(todo)}", flush=True)
    for n, (path, rel) in enumerate(todo, 1):
        r = run_one(path, rel, registered, args)
        r["commit"] = commit
        results.append(r)
        print(f"[{n}/{len(todo)}] {r['status']:7s} {r['seconds']:6.1f}s {rel}"
              + (f"  -- {r['first_error']}" if r["first_error"] else ""), flush=True)
        write_report(results, skipped, args, args.out, [rel for _, rel in in_scope])
    summary = write_report(results, skipped, args, args.out, [rel for _, rel in in_scope])
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
