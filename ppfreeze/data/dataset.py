"""Datasets that read PaddleClas image lists: ``relative/path label`` lines (ImageNetDataset), or
paths whose label an op produces (CustomLabelDataset)."""
from __future__ import annotations

import os
from typing import Any, List, Optional, Tuple

import numpy as np
import paddle

from ..config.errors import ConfigError
from .preprocess import DecodeImage, create_operators, outputs_channel_first, transform
from .registry import DATASETS

_MAX_LISTED_MISSING = 5


class LabelLine:
    """One sample from a label file: image path, label and where it was listed."""

    __slots__ = ("path", "label", "line_no")

    def __init__(self, path: str, label: int, line_no: int):
        self.path = path
        self.label = label
        self.line_no = line_no


def read_label_file(label_path: str, image_root: str, delimiter: Optional[str] = None,
                    key: str = "cls_label_path") -> List[LabelLine]:
    """Parse ``relative/path label`` lines; blank lines are skipped.

    ``delimiter`` None splits on runs of whitespace (PaddleClas's default is one space).
    A malformed line raises a ConfigError naming ``file:line`` and showing the line.
    """
    if not isinstance(label_path, str) or not os.path.isfile(label_path):
        raise ConfigError(key, f"label file {label_path!r} does not exist",
                          "check the path; relative paths are resolved from the current directory")
    samples = []
    with open(label_path, "r", encoding="utf-8") as f:
        for line_no, raw in enumerate(f, start=1):
            line = raw.strip()
            if line:
                samples.append(_parse_label_line(line, line_no, label_path, image_root, delimiter, key))
    if not samples:
        raise ConfigError(key, f"label file {label_path} lists no images",
                          "expected lines such as 'images/cat_001.jpg 3'")
    return samples


def _parse_label_line(line: str, line_no: int, label_path: str, image_root: str,
                      delimiter: Optional[str], key: str) -> LabelLine:
    fields = line.split(delimiter) if delimiter not in (None, " ") else line.split()
    where = f"{label_path}:{line_no}"
    if len(fields) != 2:
        sep = "whitespace" if delimiter in (None, " ") else repr(delimiter)
        raise ConfigError(key, f"{where}: expected 2 fields 'image_path label' separated by {sep}, "
                               f"found {len(fields)} in line {line!r}",
                          "set dataset.delimiter if the file uses another separator")
    try:
        label = int(fields[1])
    except ValueError:
        raise ConfigError(key, f"{where}: label {fields[1]!r} is not an integer in line {line!r}") from None
    return LabelLine(os.path.join(image_root, fields[0]), label, line_no)


def check_images_exist(samples: List[LabelLine], label_path: str, key: str = "image_root") -> None:
    """Raise one ConfigError listing the first missing image files (with their label-file lines)."""
    missing = [s for s in samples if not os.path.isfile(s.path)]
    if not missing:
        return
    shown = "; ".join(f"{s.path} (listed at {label_path}:{s.line_no})" for s in missing[:_MAX_LISTED_MISSING])
    more = f" and {len(missing) - _MAX_LISTED_MISSING} more" if len(missing) > _MAX_LISTED_MISSING else ""
    raise ConfigError(key, f"{len(missing)} of {len(samples)} images do not exist: {shown}{more}",
                      "image paths in the label file are relative to image_root")


@DATASETS.register
class ImageNetDataset(paddle.io.Dataset):
    """Images listed in a label file, transformed by PaddleClas preprocess ops.

    ``__getitem__`` returns ``(image float32 CHW, label int64)`` (float16 with output_fp16). Like PaddleClas, HWC
    outputs of the ops are transposed to CHW here (train/eval configs carry no ToCHWImage; ops such as
    ToTensor that already yield CHW say so).

    Args:
        image_root: directory the label file's paths are relative to.
        cls_label_path: label file with ``relative/path label`` lines.
        transform_ops: PaddleClas op list, e.g. ``[{DecodeImage: {to_rgb: true}}, ...]``.
        delimiter: field separator (default: whitespace).
        relabel: map the sorted distinct labels to 0..K-1.
    """

    def __init__(self, image_root: str, cls_label_path: str, transform_ops: Optional[List[Any]] = None,
                 delimiter: Optional[str] = None, relabel: bool = False):
        super().__init__()
        if not isinstance(image_root, str) or not os.path.isdir(image_root):
            raise ConfigError("image_root", f"image directory {image_root!r} does not exist")
        self.image_root = image_root
        self.cls_label_path = cls_label_path
        self._ops = _decoding_ops(transform_ops)
        self._transposes = not outputs_channel_first(self._ops)
        self._samples = read_label_file(cls_label_path, image_root, delimiter)
        check_images_exist(self._samples, cls_label_path)
        if relabel:
            self._relabel()
        self.images: List[str] = [s.path for s in self._samples]
        self.labels: List[int] = [s.label for s in self._samples]

    def _relabel(self) -> None:
        new_id = {old: new for new, old in enumerate(sorted({s.label for s in self._samples}))}
        for s in self._samples:
            s.label = new_id[s.label]

    @property
    def class_num(self) -> int:
        """Number of distinct labels (PaddleClas's meaning)."""
        return len(set(self.labels))

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, idx: int) -> Tuple[np.ndarray, np.int64]:
        sample = self._samples[idx]
        try:
            with open(sample.path, "rb") as f:
                img = transform(f.read(), self._ops)
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot load image {sample.path} (listed at {self.cls_label_path}:"
                             f"{sample.line_no}): {e}") from e
        return _chw_array(img, self._transposes), np.int64(sample.label)


def _decoding_ops(transform_ops: Optional[List[Any]]) -> List[Any]:
    """Build ``transform_ops``, which must start with DecodeImage (datasets read encoded bytes)."""
    ops = create_operators(transform_ops, "transform_ops")
    if not ops or not isinstance(ops[0], DecodeImage):
        raise ConfigError("transform_ops", "the op list must start with DecodeImage (the dataset reads "
                                           "encoded image bytes)", "add '- DecodeImage: {to_rgb: true}' first")
    return ops


def _chw_array(img: np.ndarray, transpose: bool) -> np.ndarray:
    """The ops' output as a contiguous CHW float32 (float16 kept: NormalizeImage(output_fp16=True))."""
    if transpose:
        img = img.transpose((2, 0, 1))
    if img.dtype != np.float16:
        img = img.astype(np.float32, copy=False)
    return np.ascontiguousarray(img)


@DATASETS.register
class CustomLabelDataset(paddle.io.Dataset):
    """Images whose label an op produces (PaddleClas ``CustomLabelDataset``, its PULC tasks).

    The sample list has one image path per line (relative to ``image_root``; with a
    ``delimiter``, the first field). The ops run on ``{"img": bytes}``; ``label_key`` names the
    label one of them adds, e.g. ``random_rot90_orientation`` (RandomRot90, 0-3) or
    ``blur_image`` (BlurImage, 0/1). ``__getitem__`` returns ``(image float32 CHW, label int64)``.

    Args:
        image_root: directory the list's paths are relative to.
        sample_list_path: the image list.
        transform_ops: PaddleClas op list starting with DecodeImage.
        label_key: the label an op of ``transform_ops`` produces.
        delimiter: field separator of the list (default: the whole line is the path).
    """

    def __init__(self, image_root: str, sample_list_path: str, transform_ops: Optional[List[Any]] = None,
                 label_key: Optional[str] = None, delimiter: Optional[str] = None):
        super().__init__()
        if not isinstance(image_root, str) or not os.path.isdir(image_root):
            raise ConfigError("image_root", f"image directory {image_root!r} does not exist")
        self._ops = _decoding_ops(transform_ops)
        produced = [op.label_key for op in self._ops if getattr(op, "label_key", None)]
        if label_key not in produced:
            raise ConfigError("label_key", f"{label_key!r} is not produced by any op of transform_ops",
                              f"ops here produce: {', '.join(produced) or 'none'} (RandomRot90 gives "
                              f"random_rot90_orientation, BlurImage gives blur_image)")
        self.label_key = label_key
        self._transposes = not outputs_channel_first(self._ops)
        self.sample_list_path = sample_list_path
        self._samples = self._read_list(sample_list_path, image_root, delimiter)
        check_images_exist(self._samples, sample_list_path)
        self.images: List[str] = [s.path for s in self._samples]

    @staticmethod
    def _read_list(path: str, image_root: str, delimiter: Optional[str]) -> List[LabelLine]:
        if not isinstance(path, str) or not os.path.isfile(path):
            raise ConfigError("sample_list_path", f"image list {path!r} does not exist")
        samples = []
        with open(path, "r", encoding="utf-8") as f:
            for line_no, raw in enumerate(f, start=1):
                line = raw.strip()
                if line:
                    rel = line.split(delimiter)[0] if delimiter is not None else line
                    samples.append(LabelLine(os.path.join(image_root, rel), -1, line_no))
        if not samples:
            raise ConfigError("sample_list_path", f"image list {path} lists no images")
        return samples

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, idx: int) -> Tuple[np.ndarray, np.int64]:
        sample = self._samples[idx]
        try:
            with open(sample.path, "rb") as f:
                out = transform({"img": f.read()}, self._ops)
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot load image {sample.path} (listed at {self.sample_list_path}:"
                             f"{sample.line_no}): {e}") from e
        return _chw_array(out["img"], self._transposes), np.int64(out[self.label_key])
