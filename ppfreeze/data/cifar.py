"""CIFAR-10 / CIFAR-100 from the python-version tarballs (PaddleClas ``Cifar10`` / ``Cifar100``).

The tarball's batches are pickles. They are read with the restricted unpickler of
``ppfreeze.utils.safe_load`` (plain containers, bytes, str, numbers and numpy arrays of
non-object dtypes): a pickle naming any other global (a function, a class) is refused with a
ConfigError naming the file, so a tampered tarball cannot run code. Nothing is downloaded: a missing tarball is a ConfigError saying where to
put it.
"""
from __future__ import annotations

import os
import pickle
import tarfile
from typing import Any, Callable, List, Optional, Tuple

import numpy as np
import paddle

from ..config.errors import ConfigError
from ..utils.safe_load import restricted_loads
from .dataset import finish_image
from .preprocess import create_operators, outputs_channel_first, transform
from .registry import DATASETS

# Where paddle.vision's Cifar datasets (which PaddleClas wraps) keep downloaded tarballs.
PADDLE_DATA_HOME = os.path.join("~", ".cache", "paddle", "dataset")


def load_data_pickle(data: bytes, source: str, key: str = "data_file") -> Any:
    """Unpickle ``data`` admitting only plain data and numpy arrays; anything else is a ConfigError."""
    try:
        return restricted_loads(data, encoding="bytes")
    except pickle.UnpicklingError as e:
        raise ConfigError(key, f"{source} is not a plain-data pickle ({e}); refusing to load it",
                          "only the python-version CIFAR tarball from cs.toronto.edu/~kriz/cifar.html "
                          "(dicts of numpy arrays and lists) is accepted") from None
    except Exception as e:  # truncated or corrupt stream
        raise ConfigError(key, f"{source} is not a readable pickle: {type(e).__name__}: {e}") from None


class _CifarBase(paddle.io.Dataset):
    """Shared by Cifar10 / Cifar100; see :class:`Cifar10` for the arguments."""

    class_count = 10
    tarball = "cifar-10-python.tar.gz"
    members = {"train": "data_batch", "test": "test_batch"}   # member-name substring per mode
    default_backend = "cv2"

    def __init__(self, data_file: Optional[str] = None, mode: str = "train", download: bool = True,
                 backend: Optional[str] = None, sample_per_label: Any = None, expand_labels: int = 1,
                 transform_ops: Optional[List[Any]] = None, transform_ops_weak: Optional[List[Any]] = None,
                 transform_ops_strong: Optional[List[Any]] = None, transform_ops_strong2: Optional[List[Any]] = None,
                 seed: int = 0):
        super().__init__()
        self.mode = _check_choice("mode", str(mode).lower(), tuple(self.members))
        self.backend = _check_choice("backend", backend or self.default_backend, ("cv2", "pil"))
        # PaddleClas's configs write None, which YAML reads as the string 'None'; PaddleClas then finds
        # no such file (data_file) or no integer (sample_per_label) and behaves as for null
        data_file, sample_per_label = (None if v == "None" else v for v in (data_file, sample_per_label))
        self.data_file = self._locate(data_file, download)
        images, labels = self._read_tarball()
        images, labels = _subsample(images, labels, sample_per_label, expand_labels, self.class_count, seed)
        self._images = images
        self.labels: List[int] = [int(v) for v in labels]
        self._ops = create_operators(transform_ops, "transform_ops")
        self._views = [create_operators(ops, key) for key, ops in
                       (("transform_ops_weak", transform_ops_weak), ("transform_ops_strong", transform_ops_strong),
                        ("transform_ops_strong2", transform_ops_strong2)) if ops]

    @property
    def class_num(self) -> int:
        """10 or 100 (PaddleClas's meaning: the dataset's class count, not the labels seen)."""
        return self.class_count

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, idx: int) -> Tuple[Any, ...]:
        image = self._image(idx)
        label = np.int64(self.labels[idx])
        if self._ops or not self._views:
            return self._transformed(image, self._ops), label
        # semi-supervised views (PaddleClas: weak + strong [+ strong2] when transform_ops is not given)
        return (*(self._transformed(image, ops) for ops in self._views), label)

    def _image(self, idx: int) -> np.ndarray:
        # rows are 3072 bytes: 1024 R, 1024 G, 1024 B (row-major 32 x 32)
        hwc = self._images[idx].reshape(3, 32, 32).transpose(1, 2, 0)
        # paddle.vision's Cifar: 'pil' yields the uint8 picture, 'cv2' the same pixels as float32
        return hwc.copy() if self.backend == "pil" else hwc.astype(np.float32)

    @staticmethod
    def _transformed(image: np.ndarray, ops: List[Callable]) -> np.ndarray:
        return finish_image(transform(image, ops), not outputs_channel_first(ops))

    def _locate(self, data_file: Optional[str], download: bool) -> str:
        default = os.path.expanduser(os.path.join(PADDLE_DATA_HOME, "cifar", self.tarball))
        path = default if data_file is None else data_file
        if os.path.isfile(path):
            return path
        where = " (data_file is null, so the default location is used)" if data_file is None else ""
        if download:
            where += "; download: true is ignored, ppfreeze never downloads"
        raise ConfigError("data_file", f"{path} does not exist{where}",
                          f"put the python-version tarball {self.tarball} from https://www.cs.toronto.edu/~kriz/"
                          f"cifar.html at {default}, or set data_file to where it is")

    def _read_tarball(self) -> Tuple[np.ndarray, np.ndarray]:
        flag = self.members[self.mode]
        try:
            with tarfile.open(self.data_file, mode="r") as tar:
                names = sorted(m.name for m in tar.getmembers() if m.isfile() and flag in m.name)
                batches = [self._read_batch(tar, name) for name in names]
        except tarfile.TarError as e:
            raise ConfigError("data_file", f"{self.data_file} is not a readable tar archive: {e}") from None
        if not batches:
            raise ConfigError("data_file", f"{self.data_file} has no member named like '*{flag}*' for mode "
                                           f"{self.mode!r}", f"is it {self.tarball}?")
        return (np.concatenate([b[0] for b in batches]),
                np.concatenate([b[1] for b in batches]))

    def _read_batch(self, tar: tarfile.TarFile, name: str) -> Tuple[np.ndarray, np.ndarray]:
        source = f"{self.data_file}:{name}"
        batch = load_data_pickle(tar.extractfile(name).read(), source)
        if not isinstance(batch, dict) or not isinstance(batch.get(b"data"), np.ndarray):
            raise ConfigError("data_file", f"{source}: expected a dict with b'data' (a numpy array)")
        data = batch[b"data"]
        labels = batch.get(b"labels", batch.get(b"fine_labels"))
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ConfigError("data_file", f"{source}: b'data' must be uint8 [N, 3072], got {data.dtype} "
                                           f"{list(data.shape)}")
        if not isinstance(labels, list) or len(labels) != len(data) \
                or not all(isinstance(v, int) and 0 <= v < self.class_count for v in labels):
            raise ConfigError("data_file", f"{source}: expected b'labels' or b'fine_labels': a list of {len(data)} "
                                           f"class ids in [0, {self.class_count})")
        return data, np.asarray(labels, dtype=np.int64)


def _check_choice(key: str, value: Any, choices: Tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(key, f"expected one of {', '.join(choices)}, got {value!r}")
    return value


def _subsample(images: np.ndarray, labels: np.ndarray, sample_per_label: Optional[int], expand_labels: Any,
               class_count: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """PaddleClas: keep ``sample_per_label`` random images of every class, the list repeated ``expand_labels`` times."""
    if isinstance(expand_labels, bool) or not isinstance(expand_labels, int) or expand_labels < 1:
        raise ConfigError("expand_labels", f"expected a positive integer, got {expand_labels!r}")
    if sample_per_label is None:
        return images, labels
    if isinstance(sample_per_label, bool) or not isinstance(sample_per_label, int) or sample_per_label < 1:
        raise ConfigError("sample_per_label", f"expected a positive integer or null, got {sample_per_label!r}")
    rng = np.random.RandomState(seed)   # the run's seed: the same subset on every rank and resume
    chosen = []
    for c in range(class_count):
        members = np.flatnonzero(labels == c)
        if len(members) < sample_per_label:
            raise ConfigError("sample_per_label", f"class {c} has only {len(members)} images, "
                                                  f"fewer than {sample_per_label}")
        chosen.extend(rng.choice(members, sample_per_label, replace=False))
    index = np.asarray(chosen * expand_labels, dtype=np.int64)
    return images[index], labels[index]


@DATASETS.register
class Cifar10(_CifarBase):
    """CIFAR-10 from ``cifar-10-python.tar.gz`` (PaddleClas ``Cifar10``, which wraps paddle.vision's).

    ``__getitem__`` returns ``(image float32 CHW, label int64)``; the ops get the 32 x 32 RGB
    picture as HWC (uint8 with ``backend: pil``, float32 0..255 with ``cv2``) and no
    DecodeImage. Without ``transform_ops``, the ``_weak`` / ``_strong`` / ``_strong2`` lists
    give one view each: ``(weak, strong[, strong2], label)`` (PaddleClas's semi-supervised use).

    Args:
        data_file: the tarball (default ``~/.cache/paddle/dataset/cifar/cifar-10-python.tar.gz``).
        mode: "train" (data_batch_1..5) or "test" (test_batch).
        download: accepted for PaddleClas configs; ppfreeze never downloads.
        backend: "cv2" (default) or "pil": the pixel type the ops receive, see above.
        sample_per_label: keep this many random images per class (drawn from the run's seed).
        expand_labels: repeat the kept list this many times.
        transform_ops, transform_ops_weak, transform_ops_strong, transform_ops_strong2: op lists.
        seed: the run's seed (given by the loader).
    """


@DATASETS.register
class Cifar100(_CifarBase):
    """CIFAR-100 (fine labels) from ``cifar-100-python.tar.gz``; like :class:`Cifar10`, default backend "pil"."""

    class_count = 100
    tarball = "cifar-100-python.tar.gz"
    members = {"train": "train", "test": "test"}
    default_backend = "pil"
