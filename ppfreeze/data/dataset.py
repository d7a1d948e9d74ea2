"""Datasets that read PaddleClas list files (``relative/path label`` per line) and shared helpers.

The helpers here (list-file reading, image loading, CHW layout) are used by every dataset
module: ``multilabel_dataset``, ``reid_dataset``, ``cifar``, ``multi_scale``.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import paddle

from ..config.errors import ConfigError
from ..utils.text import iter_text_lines
from .failures import BadImageError
from .preprocess import DecodeImage, create_operators, outputs_channel_first, transform
from .registry import DATASETS

_MAX_LISTED_MISSING = 5


class LabelLine:
    """One sample from a label file: image path, label and where it was listed."""

    __slots__ = ("path", "label", "line_no")

    def __init__(self, path: str, label: Any, line_no: int):
        self.path = path
        self.label = label
        self.line_no = line_no


def iter_list_lines(list_path: str, key: str) -> Iterator[Tuple[int, str]]:
    """Yield ``(line_no, stripped line)`` for the non-blank lines of a list file.

    A missing file, or one that is not UTF-8 (a BOM is fine), is a ConfigError on ``key``.
    """
    if not isinstance(list_path, str) or not os.path.isfile(list_path):
        raise ConfigError(key, f"list file {list_path!r} does not exist",
                          "check the path; relative paths are resolved from the current directory")
    for line_no, raw in iter_text_lines(list_path, key):
        line = raw.strip()
        if line:
            yield line_no, line


def split_fields(line: str, delimiter: Optional[str]) -> List[str]:
    """Split on ``delimiter``; None (or one space, PaddleClas's default) splits on runs of whitespace."""
    return line.split(delimiter) if delimiter not in (None, " ") else line.split()


def parse_int(text: str, what: str, where: str, line: str, key: str) -> int:
    """``int(text)`` or a ConfigError naming ``file:line`` and showing the line."""
    try:
        return int(text)
    except ValueError:
        raise ConfigError(key, f"{where}: {what} {text!r} is not an integer in line {line!r}") from None


def read_label_file(label_path: str, image_root: str, delimiter: Optional[str] = None,
                    key: str = "cls_label_path") -> List[LabelLine]:
    """Parse ``relative/path label`` lines; blank lines are skipped.

    ``delimiter`` None splits on runs of whitespace (PaddleClas's default is one space).
    A malformed line raises a ConfigError naming ``file:line`` and showing the line.
    """
    samples = [_parse_label_line(line, line_no, label_path, image_root, delimiter, key)
               for line_no, line in iter_list_lines(label_path, key)]
    if not samples:
        raise ConfigError(key, f"label file {label_path} lists no images",
                          "expected lines such as 'images/cat_001.jpg 3'")
    return samples


def _parse_label_line(line: str, line_no: int, label_path: str, image_root: str,
                      delimiter: Optional[str], key: str) -> LabelLine:
    fields = split_fields(line, delimiter)
    where = f"{label_path}:{line_no}"
    if len(fields) != 2:
        sep = "whitespace" if delimiter in (None, " ") else repr(delimiter)
        raise ConfigError(key, f"{where}: expected 2 fields 'image_path label' separated by {sep}, "
                               f"found {len(fields)} in line {line!r}",
                          "set dataset.delimiter if the file uses another separator")
    label = parse_int(fields[1], "label", where, line, key)
    return LabelLine(os.path.join(image_root, fields[0]), label, line_no)


def check_image_root(image_root: Any, key: str = "image_root") -> str:
    """``image_root`` must be an existing directory."""
    if not isinstance(image_root, str) or not os.path.isdir(image_root):
        raise ConfigError(key, f"image directory {image_root!r} does not exist")
    return image_root


def check_images_exist(samples: Sequence[LabelLine], label_path: str, key: str = "image_root") -> None:
    """Raise one ConfigError listing the first missing image files (with their label-file lines)."""
    missing = [s for s in samples if not os.path.isfile(s.path)]
    if not missing:
        return
    shown = "; ".join(f"{s.path} (listed at {label_path}:{s.line_no})" for s in missing[:_MAX_LISTED_MISSING])
    more = f" and {len(missing) - _MAX_LISTED_MISSING} more" if len(missing) > _MAX_LISTED_MISSING else ""
    raise ConfigError(key, f"{len(missing)} of {len(samples)} images do not exist: {shown}{more}",
                      "image paths in the label file are relative to image_root")


def relabel_map(labels: Sequence[int]) -> Dict[int, int]:
    """Sorted distinct labels -> 0..K-1 (PaddleClas enumerates a set of small ints: the same order)."""
    return {old: new for new, old in enumerate(sorted(set(labels)))}


def finish_image(img: Any, transposes: bool) -> np.ndarray:
    """HWC -> CHW when the ops did not do it; float32 unless the ops chose float16."""
    img = np.asarray(img)
    if transposes:
        img = img.transpose((2, 0, 1))
    if img.dtype != np.float16:  # keep NormalizeImage(output_fp16=True) as asked
        img = img.astype(np.float32, copy=False)
    return np.ascontiguousarray(img)


def read_image_bytes(path: str, where: str) -> bytes:
    """The raw bytes of an image file; an unreadable file is a :class:`BadImageError` naming where it was listed."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise BadImageError(path, where, f"cannot read it ({e.strerror or e})") from e


def apply_ops(data: Any, ops: Sequence[Callable], path: str, where: str) -> Any:
    """``transform(data, ops)``; an image the ops cannot handle (undecodable, damaged, too
    small for a crop) is a :class:`BadImageError` naming the file and where it was listed."""
    try:
        return transform(data, ops)
    except (ConfigError, BadImageError):
        raise
    except (OSError, ValueError) as e:
        raise BadImageError(path, where, str(e)) from e


def build_ops(transform_ops: Optional[List[Any]], key: str = "transform_ops",
              decode_first: bool = True) -> List[Callable]:
    """Build ``transform_ops``; with ``decode_first`` the list must start with DecodeImage."""
    ops = create_operators(transform_ops, key)
    if decode_first and (not ops or not isinstance(ops[0], DecodeImage)):
        raise ConfigError(key, "the op list must start with DecodeImage (the dataset reads "
                               "encoded image bytes)", "add '- DecodeImage: {to_rgb: true}' first")
    return ops


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
        self.image_root = check_image_root(image_root)
        self.cls_label_path = cls_label_path
        self._ops = build_ops(transform_ops)
        self._transposes = not outputs_channel_first(self._ops)
        self._samples = read_label_file(cls_label_path, image_root, delimiter)
        check_images_exist(self._samples, cls_label_path)
        if relabel:
            self._relabel()
        self.images: List[str] = [s.path for s in self._samples]
        self.labels: List[int] = [s.label for s in self._samples]

    def _relabel(self) -> None:
        new_id = relabel_map([s.label for s in self._samples])
        for s in self._samples:
            s.label = new_id[s.label]

    @property
    def class_num(self) -> int:
        """Number of distinct labels (PaddleClas's meaning)."""
        return len(set(self.labels))

    @property
    def transform_ops(self) -> List[Callable]:
        """The per-image ops, in order (the Freeze feature cache checks whether they are random)."""
        return list(self._ops)

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, idx: int) -> Tuple[np.ndarray, np.int64]:
        sample = self._samples[idx]
        where = f"listed at {self.cls_label_path}:{sample.line_no}"
        img = apply_ops(read_image_bytes(sample.path, where), self._ops, sample.path, where)
        return finish_image(img, self._transposes), np.int64(sample.label)


@DATASETS.register
class ICartoonDataset(ImageNetDataset):
    """PaddleClas's iCartoonFace list: ``relative/path<TAB>label`` lines (otherwise ImageNetDataset).

    Args:
        image_root: directory the list's paths are relative to.
        cls_label_path: tab-separated list file.
        transform_ops: PaddleClas op list starting with DecodeImage.
    """

    def __init__(self, image_root: str, cls_label_path: str, transform_ops: Optional[List[Any]] = None):
        super().__init__(image_root, cls_label_path, transform_ops, delimiter="\t")


@DATASETS.register
class CustomLabelDataset(paddle.io.Dataset):
    """Images whose label comes from a transform op (PaddleClas ``CustomLabelDataset``).

    Each line of ``sample_list_path`` names an image (with ``delimiter`` set, only the first
    field; without it the whole line is the path, as in PaddleClas). The ops run on a sample
    dict ``{"img": ...}``: every op gets the image, and an op may return a dict such as
    ``{"img": rotated, "random_rot90_orientation": 2}`` whose other entries join the sample
    (PaddleClas's ``format_data`` convention). ``label_key`` names the entry used as label.

    ``__getitem__`` returns ``(image float32 CHW, label int64)``.

    Args:
        image_root: directory the list's paths are relative to.
        sample_list_path: list file, one image per line.
        transform_ops: PaddleClas op list starting with DecodeImage; one op must yield ``label_key``.
        label_key: sample entry holding the label, e.g. ``random_rot90_orientation``.
        delimiter: separator after the image path, when lines carry more fields.
    """

    def __init__(self, image_root: str, sample_list_path: str, transform_ops: Optional[List[Any]] = None,
                 label_key: Optional[str] = None, delimiter: Optional[str] = None):
        super().__init__()
        if not isinstance(label_key, str) or not label_key:
            raise ConfigError("label_key", f"expected the name of the sample entry an op writes the label to, "
                                           f"got {label_key!r}",
                              "e.g. label_key: random_rot90_orientation with the RandomRot90 op; ppfreeze "
                              "trains on (image, label) pairs")
        self.image_root = check_image_root(image_root)
        self.sample_list_path = sample_list_path
        self.label_key = label_key
        self._ops = build_ops(transform_ops)
        produced = [op.label_key for op in self._ops if getattr(op, "label_key", None)]
        if label_key not in produced:
            raise ConfigError("label_key", f"{label_key!r} is not produced by any op of transform_ops",
                              f"ops here produce: {', '.join(produced) or 'none'} (RandomRot90 gives "
                              f"random_rot90_orientation, BlurImage gives blur_image)")
        self._transposes = not outputs_channel_first(self._ops)
        self._samples = [LabelLine(os.path.join(image_root, line if delimiter is None else line.split(delimiter)[0]),
                                   None, line_no)
                         for line_no, line in iter_list_lines(sample_list_path, "sample_list_path")]
        if not self._samples:
            raise ConfigError("sample_list_path", f"list file {sample_list_path} lists no images")
        check_images_exist(self._samples, sample_list_path)
        self.images: List[str] = [s.path for s in self._samples]

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, idx: int) -> Tuple[np.ndarray, np.int64]:
        sample = self._samples[idx]
        where = f"listed at {self.sample_list_path}:{sample.line_no}"
        # the ops run on a sample dict; the one producing label_key adds it (PaddleClas's format_data)
        record = apply_ops({"img": read_image_bytes(sample.path, where)}, self._ops, sample.path, where)
        return finish_image(record["img"], self._transposes), np.int64(record[self.label_key])
