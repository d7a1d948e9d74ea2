"""Re-identification and vehicle datasets: Market1501, DukeMTMC, VeriWild, CompCars (PaddleClas names).

Market1501 / DukeMTMC read a folder of JPEGs whose names carry the identity and camera
(``0002_c1s1_000451_03.jpg``: person 2, camera 1); VeriWild and CompCars read list files.
Items with cameras are ``(image, label, camera)``: retrieval evaluation then skips, for
each query, the gallery images of the same identity taken by the same camera (the
standard re-id protocol, PaddleClas's ``keep_mask``).
"""
from __future__ import annotations

import glob
import os
import re
from typing import Any, List, Optional, Tuple

import numpy as np
import paddle

from ..config.errors import ConfigError
from ..utils.text import iter_text_lines
from .dataset import (LabelLine, apply_ops, build_ops, check_image_root, check_images_exist, finish_image,
                      iter_list_lines, parse_int, read_image_bytes, relabel_map, split_fields)
from .preprocess import DecodeImage, outputs_channel_first
from .registry import DATASETS

_BACKENDS = ("cv2", "pil")


def _check_backend(backend: Any) -> str:
    if backend not in _BACKENDS:
        raise ConfigError("backend", f"expected cv2 or pil, got {backend!r}")
    return backend


class _ReIDFolder(paddle.io.Dataset):
    """Images of one split folder of a re-id benchmark; identity and camera parsed from file names.

    Subclasses set the benchmark's folder under ``image_root``, the file-name pattern, the
    camera range and whether junk images (identity -1) are dropped.
    """

    dataset_dir = ""
    pattern = re.compile(r"([-\d]+)_c(\d+)")
    max_camera = 0
    drop_junk = True

    def __init__(self, image_root: str, cls_label_path: str, transform_ops: Optional[List[Any]] = None,
                 backend: str = "cv2"):
        super().__init__()
        self.backend = _check_backend(backend)
        self.folder = os.path.join(image_root, self.dataset_dir, cls_label_path)
        if not os.path.isdir(self.folder):
            raise ConfigError("cls_label_path", f"{self.folder} does not exist",
                              f"{type(self).__name__} reads image_root/{self.dataset_dir}/<cls_label_path>, e.g. "
                              f"cls_label_path: bounding_box_train, query or bounding_box_test")
        self._ops = build_ops(transform_ops, decode_first=False)
        self._transposes = not outputs_channel_first(self._ops)
        self._decode = DecodeImage(to_rgb=True, backend="pil")  # PaddleClas opens these with PIL
        self.images, self.labels, self.cameras = self._scan(relabel="train" in cls_label_path)
        if not self.images:
            raise ConfigError("cls_label_path", f"{self.folder} holds no usable .jpg images")

    def _scan(self, relabel: bool) -> Tuple[List[str], List[int], List[int]]:
        records = []
        for path in sorted(glob.glob(os.path.join(self.folder, "*.jpg"))):
            match = self.pattern.search(os.path.basename(path))
            if match is None:
                raise ConfigError("cls_label_path", f"{path}: file name does not match "
                                                    f"'<person>_c<camera>...' ({self.pattern.pattern})")
            pid, camera = int(match.group(1)), int(match.group(2))
            if self.drop_junk and pid == -1:
                continue  # junk detections
            if not 1 <= camera <= self.max_camera:
                raise ConfigError("cls_label_path", f"{path}: camera {camera} outside 1..{self.max_camera}")
            records.append((path, pid, camera - 1))  # cameras count from 0
        new_id = relabel_map([pid for _, pid, _ in records]) if relabel else None
        return ([p for p, _, _ in records], [new_id[pid] if new_id else pid for _, pid, _ in records],
                [c for _, _, c in records])

    @property
    def class_num(self) -> int:
        """Number of distinct identities."""
        return len(set(self.labels))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: int) -> Tuple[np.ndarray, np.int64, np.int64]:
        path = self.images[idx]
        where = f"in {self.folder}"
        img = apply_ops(self._decode(read_image_bytes(path, where)), self._ops, path, where)
        return finish_image(img, self._transposes), np.int64(self.labels[idx]), np.int64(self.cameras[idx])


@DATASETS.register
class Market1501(_ReIDFolder):
    """Market-1501 under ``image_root/market1501/Market-1501-v15.09.15/<cls_label_path>``.

    Identity -1 (junk) is dropped, 0 (background) kept; cameras 1..6 become 0..5. A folder
    whose name contains "train" is relabelled to 0..K-1 (sorted identities). The ops get the
    decoded RGB HWC uint8 picture (no DecodeImage); the result is ``(image, label, camera)``.

    Args:
        image_root: directory holding ``market1501/``.
        cls_label_path: the split folder: bounding_box_train, query or bounding_box_test.
        transform_ops: PaddleClas op list (without DecodeImage).
        backend: "cv2" or "pil", accepted for PaddleClas configs (both decode with PIL; the
            ops' output is made CHW unless they already produce it, e.g. with ToTensor).
    """

    dataset_dir = os.path.join("market1501", "Market-1501-v15.09.15")
    pattern = re.compile(r"([-\d]+)_c(\d)")
    max_camera = 6


@DATASETS.register
class DukeMTMC(_ReIDFolder):
    """DukeMTMC-reID under ``image_root/dukemtmc/DukeMTMC-reID/<cls_label_path>`` (cameras 1..8).

    Like :class:`Market1501`, except that no identity is dropped.
    """

    dataset_dir = os.path.join("dukemtmc", "DukeMTMC-reID")
    max_camera = 8
    drop_junk = False


@DATASETS.register
class VeriWild(paddle.io.Dataset):
    """List-file retrieval set (VeRI-Wild, SOP, In-shop, Aliproduct...): ``path label [camera]`` lines.

    With a third column every item is ``(image, label, camera)`` and retrieval evaluation
    skips same-label same-camera gallery images (SOP lists put a unique image id there, so
    a query never matches itself); otherwise ``(image, label)``.

    Args:
        image_root: directory the list's paths are relative to.
        cls_label_path: whitespace-separated list file.
        transform_ops: PaddleClas op list; with ``backend: cv2`` it starts with DecodeImage
            (the ops get the file bytes), with ``pil`` the ops get the decoded RGB picture.
        backend: "cv2" or "pil", see above.
        relabel: map the sorted distinct labels to 0..K-1.
    """

    def __init__(self, image_root: str, cls_label_path: str, transform_ops: Optional[List[Any]] = None,
                 backend: str = "cv2", relabel: bool = False):
        super().__init__()
        self.backend = _check_backend(backend)
        self.image_root = check_image_root(image_root)
        self.cls_label_path = cls_label_path
        self._ops = build_ops(transform_ops, decode_first=self.backend == "cv2")
        self._transposes = not outputs_channel_first(self._ops)
        self._decode = DecodeImage(to_rgb=True, backend="pil") if self.backend == "pil" else None
        self._samples, cameras = self._read(cls_label_path, image_root)
        check_images_exist(self._samples, cls_label_path)
        if relabel:
            new_id = relabel_map([s.label for s in self._samples])
            for s in self._samples:
                s.label = new_id[s.label]
        self.images: List[str] = [s.path for s in self._samples]
        self.labels: List[int] = [s.label for s in self._samples]
        self.cameras: Optional[List[int]] = cameras

    @staticmethod
    def _read(label_path: str, image_root: str) -> Tuple[List[LabelLine], Optional[List[int]]]:
        key = "cls_label_path"
        samples, cameras, first = [], [], None
        for line_no, line in iter_list_lines(label_path, key):
            fields = split_fields(line, None)
            where = f"{label_path}:{line_no}"
            first = first or (len(fields), line_no)
            if len(fields) not in (2, 3) or len(fields) != first[0]:
                raise ConfigError(key, f"{where}: expected 'image_path label [camera]' with the same field count "
                                       f"on every line ({first[0]} on line {first[1]}), found {len(fields)} in "
                                       f"line {line!r}")
            samples.append(LabelLine(os.path.join(image_root, fields[0]),
                                     parse_int(fields[1], "label", where, line, key), line_no))
            if len(fields) == 3:
                cameras.append(parse_int(fields[2], "camera", where, line, key))
        if not samples:
            raise ConfigError(key, f"label file {label_path} lists no images")
        return samples, (cameras if cameras else None)

    @property
    def class_num(self) -> int:
        """Number of distinct labels."""
        return len(set(self.labels))

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, idx: int) -> Tuple[Any, ...]:
        sample = self._samples[idx]
        where = f"listed at {self.cls_label_path}:{sample.line_no}"
        data = read_image_bytes(sample.path, where)
        if self._decode is not None:
            data = apply_ops(data, [self._decode], sample.path, where)
        img = finish_image(apply_ops(data, self._ops, sample.path, where), self._transposes)
        if self.cameras is None:
            return img, np.int64(sample.label)
        return img, np.int64(sample.label), np.int64(self.cameras[idx])


@DATASETS.register
class CompCars(paddle.io.Dataset):
    """CompCars classification lists: ``path label`` lines, optionally cropped to the labelled box.

    With ``bbox_crop`` each image's box is the last line ``x1 y1 x2 y2`` of
    ``label_root/<path without extension>.txt``. The ops get the decoded RGB HWC uint8
    picture (no DecodeImage); items are ``(image, label)``.

    Args:
        image_root: directory the list's paths are relative to.
        cls_label_path: whitespace-separated list file.
        label_root: directory of the per-image box files (needed with bbox_crop).
        transform_ops: PaddleClas op list (without DecodeImage).
        bbox_crop: crop every image to its box.
    """

    def __init__(self, image_root: str, cls_label_path: str, label_root: Optional[str] = None,
                 transform_ops: Optional[List[Any]] = None, bbox_crop: bool = False):
        super().__init__()
        self.image_root = check_image_root(image_root)
        self.cls_label_path = cls_label_path
        if not isinstance(bbox_crop, bool):
            raise ConfigError("bbox_crop", f"expected true or false, got {bbox_crop!r}")
        if bbox_crop and (not isinstance(label_root, str) or not os.path.isdir(label_root)):
            raise ConfigError("label_root", f"bbox_crop needs the box-file directory, got {label_root!r} "
                                            "(not a directory)")
        self._ops = build_ops(transform_ops, decode_first=False)
        self._transposes = not outputs_channel_first(self._ops)
        self._decode = DecodeImage(to_rgb=True)
        self._samples = []
        for line_no, line in iter_list_lines(cls_label_path, "cls_label_path"):
            fields = split_fields(line, None)
            where = f"{cls_label_path}:{line_no}"
            if len(fields) < 2:
                raise ConfigError("cls_label_path", f"{where}: expected 'image_path label', got {line!r}")
            label = parse_int(fields[1], "label", where, line, "cls_label_path")
            self._samples.append(LabelLine(os.path.join(image_root, fields[0]), label, line_no))
        if not self._samples:
            raise ConfigError("cls_label_path", f"label file {cls_label_path} lists no images")
        check_images_exist(self._samples, cls_label_path)
        self.boxes = [self._box(label_root, s) for s in self._samples] if bbox_crop else None
        self.images: List[str] = [s.path for s in self._samples]
        self.labels: List[int] = [s.label for s in self._samples]

    def _box(self, label_root: str, sample: LabelLine) -> List[int]:
        rel = os.path.relpath(sample.path, self.image_root)
        box_file = os.path.join(label_root, os.path.splitext(rel)[0] + ".txt")
        listed = f"for {sample.path} (listed at {self.cls_label_path}:{sample.line_no})"
        if not os.path.isfile(box_file):
            raise ConfigError("label_root", f"box file {box_file} {listed} does not exist")
        lines = [ln for _, ln in iter_text_lines(box_file, "label_root") if ln.strip()]
        fields = lines[-1].split() if lines else []
        try:
            box = [int(v) for v in fields]
        except ValueError:
            box = []
        if len(box) != 4:
            raise ConfigError("label_root", f"{box_file} {listed}: the last line must be 'x1 y1 x2 y2' integers, "
                                            f"got {lines[-1] if lines else 'an empty file'!r}")
        return box

    @property
    def class_num(self) -> int:
        """Number of distinct labels."""
        return len(set(self.labels))

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, idx: int) -> Tuple[np.ndarray, np.int64]:
        sample = self._samples[idx]
        where = f"listed at {self.cls_label_path}:{sample.line_no}"
        img = apply_ops(read_image_bytes(sample.path, where), [self._decode], sample.path, where)
        if self.boxes is not None:
            x1, y1, x2, y2 = self.boxes[idx]
            img = img[y1:y2, x1:x2, :]
        img = apply_ops(img, self._ops, sample.path, where)
        return finish_image(img, self._transposes), np.int64(sample.label)
