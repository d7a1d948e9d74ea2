"""Multi-label / attribute datasets (PaddleClas ``MultiLabelDataset``).

List format, one image per line: ``relative/path<TAB>l0,l1,...,lC-1`` with one integer per
class or attribute (1 present, 0 absent; PaddleClas's attribute sets may use other values
such as -1 for "unknown", which the attribute loss and metric treat specially).
"""
from __future__ import annotations

import os
from typing import Any, List, Optional, Tuple

import numpy as np
import paddle

from ..config.errors import ConfigError
from .dataset import (LabelLine, apply_ops, build_ops, check_image_root, check_images_exist, finish_image,
                      iter_list_lines, parse_int, read_image_bytes)
from .preprocess import outputs_channel_first
from .registry import DATASETS


def read_multilabel_file(label_path: str, image_root: str, key: str = "cls_label_path") -> List[LabelLine]:
    """Parse ``path<TAB>a,b,c`` lines; every line must give the same number of integer labels."""
    samples: List[LabelLine] = []
    for line_no, line in iter_list_lines(label_path, key):
        where = f"{label_path}:{line_no}"
        fields = line.split("\t")
        if len(fields) != 2:
            raise ConfigError(key, f"{where}: expected 'image_path<TAB>l0,l1,...' (2 tab-separated fields), "
                                   f"found {len(fields)} in line {line!r}",
                              "labels are comma-separated integers, one per class")
        labels = [parse_int(v.strip(), "label", where, line, key) for v in fields[1].split(",")]
        if samples and len(labels) != len(samples[0].label):
            raise ConfigError(key, f"{where}: {len(labels)} labels, but line {samples[0].line_no} has "
                                   f"{len(samples[0].label)}", "every line needs one label per class")
        samples.append(LabelLine(os.path.join(image_root, fields[0]), labels, line_no))
    if not samples:
        raise ConfigError(key, f"label file {label_path} lists no images",
                          "expected lines such as 'images/0001.jpg<TAB>0,1,1,0'")
    return samples


@DATASETS.register
class MultiLabelDataset(paddle.io.Dataset):
    """Images with one 0/1 label per class, transformed by PaddleClas preprocess ops.

    ``__getitem__`` returns ``(image float32 CHW, target float32 [C])``; with ``label_ratio``
    the target is ``[2, C]``: row 0 the labels, row 1 every class's positive share over the
    whole list (what ``MultiLabelLoss(weight_ratio=True)`` weights by).

    The labels are in ``label_matrix`` (``[N, C]`` int64). There is no ``labels`` list:
    single-label consumers (P x K samplers, the class-count check) do not apply.

    Args:
        image_root: directory the list's paths are relative to.
        cls_label_path: list file with ``path<TAB>l0,l1,...`` lines.
        transform_ops: PaddleClas op list starting with DecodeImage.
        label_ratio: append the per-class positive share to every target (see above).
    """

    def __init__(self, image_root: str, cls_label_path: str, transform_ops: Optional[List[Any]] = None,
                 label_ratio: bool = False):
        super().__init__()
        if not isinstance(label_ratio, bool):
            raise ConfigError("label_ratio", f"expected true or false, got {label_ratio!r}")
        self.image_root = check_image_root(image_root)
        self.cls_label_path = cls_label_path
        self._ops = build_ops(transform_ops)
        self._transposes = not outputs_channel_first(self._ops)
        self._samples = read_multilabel_file(cls_label_path, image_root)
        check_images_exist(self._samples, cls_label_path)
        self.images: List[str] = [s.path for s in self._samples]
        self.label_matrix = np.asarray([s.label for s in self._samples], dtype=np.int64)
        # PaddleClas: the mean of the raw labels over the list, float32
        self.label_ratio = self.label_matrix.mean(axis=0).astype(np.float32) if label_ratio else None

    @property
    def class_num(self) -> int:
        """Number of classes (labels per line)."""
        return int(self.label_matrix.shape[1])

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, idx: int) -> Tuple[np.ndarray, np.ndarray]:
        sample = self._samples[idx]
        where = f"listed at {self.cls_label_path}:{sample.line_no}"
        img = apply_ops(read_image_bytes(sample.path, where), self._ops, sample.path, where)
        target = self.label_matrix[idx].astype(np.float32)
        if self.label_ratio is not None:
            target = np.stack([target, self.label_ratio])
        return finish_image(img, self._transposes), target
