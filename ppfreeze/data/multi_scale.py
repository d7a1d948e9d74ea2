"""Multi-scale training: ``MultiScaleSampler`` picks a resolution per batch, ``MultiScaleDataset`` obeys it.

The sampler yields batches of ``(width, height, index)`` triples whose batch size shrinks as
the resolution grows (about the same pixels per batch as ``first_bs`` images at the first
scale); the dataset resizes / crops to that resolution. PaddleClas's names and arguments.

The sequence of (resolution, batch size) is drawn once from the run's seed; every epoch
reshuffles the images from ``(seed, epoch)``.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import paddle

from ..config.errors import ConfigError
from ..utils.builder import split_component
from .dataset import (apply_ops, build_ops, check_image_root, check_images_exist, finish_image,
                      read_image_bytes, read_label_file)
from .preprocess import outputs_channel_first
from .registry import DATASETS, SAMPLERS
from .sampler import derive_seed

# ops whose output size the sampler's resolution replaces (PaddleClas's list)
RESIZING_OPS = ("RandCropImage", "ResizeImage", "CropImage")

Index = Union[int, Tuple[int, int, int]]


@DATASETS.register
class MultiScaleDataset(paddle.io.Dataset):
    """ImageNetDataset whose resizing ops take the size the sampler asks for.

    Indexed by ``(width, height, index)`` (from :class:`MultiScaleSampler`), the
    RandCropImage / ResizeImage / CropImage ops of ``transform_ops`` produce ``width x
    height`` images; their other arguments (interpolation, scale...) are kept (PaddleClas
    drops them). A plain integer index uses the ops as configured.

    Args:
        image_root: directory the label file's paths are relative to.
        cls_label_path: label file with ``relative/path label`` lines.
        transform_ops: PaddleClas op list starting with DecodeImage; it must contain one of
            RandCropImage, ResizeImage, CropImage.
        delimiter: field separator (default: whitespace).
    """

    def __init__(self, image_root: str, cls_label_path: str, transform_ops: Optional[List[Any]] = None,
                 delimiter: Optional[str] = None):
        super().__init__()
        self.image_root = check_image_root(image_root)
        self.cls_label_path = cls_label_path
        self._op_cfgs = list(transform_ops or [])
        self._default_ops = build_ops(self._op_cfgs)
        if not any(split_component(cfg, "transform_ops")[0] in RESIZING_OPS for cfg in self._op_cfgs):
            raise ConfigError("transform_ops", f"MultiScaleDataset needs one of {', '.join(RESIZING_OPS)} to "
                                               "set the resolution the sampler picks", "add e.g. RandCropImage")
        self._transposes = not outputs_channel_first(self._default_ops)
        self._ops_by_size: Dict[Tuple[int, int], list] = {}
        self._samples = read_label_file(cls_label_path, image_root, delimiter)
        check_images_exist(self._samples, cls_label_path)
        self.images: List[str] = [s.path for s in self._samples]
        self.labels: List[int] = [s.label for s in self._samples]

    # The freeze feature cache keys activations by index and needs fixed-size, deterministic
    # outputs: no `_ops` attribute here, so it never applies.

    @property
    def class_num(self) -> int:
        """Number of distinct labels."""
        return len(set(self.labels))

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, key: Index) -> Tuple[np.ndarray, np.int64]:
        if isinstance(key, (tuple, list)):
            width, height, idx = (int(v) for v in key)
            ops = self.ops_for(width, height)
        else:
            idx, ops = int(key), self._default_ops
        sample = self._samples[idx]
        where = f"listed at {self.cls_label_path}:{sample.line_no}"
        img = apply_ops(read_image_bytes(sample.path, where), ops, sample.path, where)
        return finish_image(img, self._transposes), np.int64(sample.label)

    def ops_for(self, width: int, height: int) -> list:
        """The op list producing ``width x height`` images (built once per resolution)."""
        if (width, height) not in self._ops_by_size:
            cfgs = [_with_size(cfg, width, height) for cfg in self._op_cfgs]
            self._ops_by_size[(width, height)] = build_ops(cfgs)
        return self._ops_by_size[(width, height)]


def _with_size(op_cfg: Any, width: int, height: int) -> Any:
    name, kwargs = split_component(op_cfg, "transform_ops")
    if name not in RESIZING_OPS:
        return op_cfg
    kwargs = copy.deepcopy(kwargs)
    kwargs.pop("resize_short", None)   # a fixed size replaces the short-side rule
    kwargs["size"] = [width, height]
    return {name: kwargs}


@SAMPLERS.register
class MultiScaleSampler:
    """Batches of ``(width, height, index)`` at one of several resolutions (PaddleClas ``MultiScaleSampler``).

    Args:
        dataset: the dataset (given by the loader).
        scales: resolutions, each an int (square) or ``[width, height]``; the first one is the base.
        first_bs: batch size at the first scale; a scale with ``a`` times the pixels gets
            ``max(1, int(first_bs / a))`` images.
        divided_factor: training resolutions are rounded down to a multiple of this.
        is_training: false uses the first scale only (batch size ``first_bs``, not rounded).
        shuffle: reshuffle the images every epoch.
        seed: the run's seed (given by the loader).
        num_replicas, rank: override the distributed environment (tests, tools).

    Each rank gets ``ceil(N / num_replicas)`` images per epoch, the last batch completed from
    the first images of its shard, as in PaddleClas.
    """

    def __init__(self, dataset: Any, scales: Sequence[Any], first_bs: int, divided_factor: int = 32,
                 is_training: bool = True, shuffle: bool = True, seed: int = 0,
                 num_replicas: Optional[int] = None, rank: Optional[int] = None):
        dims = _check_scales(scales)
        _check_positive_int(first_bs, "first_bs")
        _check_positive_int(divided_factor, "divided_factor")
        for key, value in (("is_training", is_training), ("shuffle", shuffle)):
            if not isinstance(value, bool):
                raise ConfigError(key, f"expected true or false, got {value!r}")
        self.num_samples = len(dataset)
        self.num_replicas = paddle.distributed.get_world_size() if num_replicas is None else int(num_replicas)
        self.rank = paddle.distributed.get_rank() if rank is None else int(rank)
        self.per_replica = math.ceil(self.num_samples / self.num_replicas)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.current_epoch = 0
        self.resolutions = _resolutions(dims, first_bs, divided_factor) if is_training else \
            [(dims[0][0], dims[0][1], first_bs)]
        if any(w < 1 or h < 1 for w, h, _ in self.resolutions):
            raise ConfigError("scales", f"every scale must be at least divided_factor ({divided_factor}) "
                                        f"pixels, got {list(scales)}")
        self.batches = self._plan(np.random.default_rng([self.seed % (1 << 63), 1]))

    def _plan(self, rng: np.random.Generator) -> List[Tuple[int, int, int]]:
        """The (width, height, batch size) of every batch of an epoch, drawn once."""
        plan, taken = [], 0
        while taken < self.per_replica:
            width, height, size = self.resolutions[int(rng.integers(len(self.resolutions)))]
            plan.append((width, height, size))
            taken += size
        return plan

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass use the image order of ``epoch``."""
        self.current_epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[List[Tuple[int, int, int]]]:
        order = np.arange(self.num_samples)
        if self.shuffle:
            order = np.random.RandomState(derive_seed(self.seed, self.current_epoch)).permutation(self.num_samples)
        shard = [int(i) for i in order[self.rank::self.num_replicas]]
        start = 0
        for width, height, size in self.batches:
            ids = shard[start:min(start + size, self.per_replica)]
            ids += shard[:size - len(ids)]     # complete the last batch from the start
            start += size
            yield [(width, height, i) for i in ids]
        self.current_epoch += 1  # without set_epoch, consecutive passes still differ


def _check_positive_int(value: Any, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(key, f"expected a positive integer, got {value!r}")


def _check_scales(scales: Any) -> List[Tuple[int, int]]:
    """``[256, 160]`` or ``[[256, 192], ...]`` -> [(width, height), ...]."""
    if not isinstance(scales, (list, tuple)) or not scales:
        raise ConfigError("scales", f"expected a non-empty list of sizes, got {scales!r}")
    dims = []
    for s in scales:
        if isinstance(s, int) and not isinstance(s, bool) and s > 0:
            dims.append((s, s))
        elif isinstance(s, (list, tuple)) and len(s) == 2 and all(isinstance(v, int) and v > 0 for v in s):
            dims.append((int(s[0]), int(s[1])))
        else:
            raise ConfigError("scales", f"each scale must be a positive int or [width, height], got {s!r}",
                              "e.g. scales: [256, 160, 192] or [[256, 256], [160, 160]]")
    return dims


def _resolutions(dims: List[Tuple[int, int]], first_bs: int, factor: int) -> List[Tuple[int, int, int]]:
    base_pixels = dims[0][0] * dims[0][1] * first_bs   # PaddleClas: from the unrounded first scale
    out = []
    for w, h in dims:
        w, h = (w // factor) * factor, (h // factor) * factor
        out.append((w, h, int(max(1, base_pixels / (h * w))) if w and h else 0))
    return out
