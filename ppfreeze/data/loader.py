"""``build_dataloader``: the PaddleClas ``DataLoader.<mode>`` section -> ``paddle.io.DataLoader``.

Failures never hang: an exception raised while loading a sample would leave Paddle's loader
waiting forever (see ``failures.py``), so it is caught where the sample is loaded, carried to
the main process with the batch, and raised there (:class:`CheckedDataLoader`). A bad image
file (unreadable, empty, undecodable, a truncated or corrupt JPEG) stops the run naming the
file and its list line, or, with ``dataset.skip_bad_images: true``, is dropped from its batch
(a batch left with no sample is skipped) and counted in the log.

Reproducibility: the shuffle order comes from ``(seed, epoch)`` (see ``sampler.py``) and
every sample's random augmentation from ``(seed, epoch, index)``: Python's ``random`` and
numpy's global RNG are reseeded right before a sample is transformed, in whichever process
or thread loads it. Batch ops (mixup, cutmix) reseed both from the seeds of the batch's
samples, so their draws are a function of (seed, epoch, the batch's indices). Batches
therefore do not depend on ``num_workers`` or on how far other code advanced those RNGs.
Call :func:`set_loader_epoch` before each epoch.
"""
from __future__ import annotations

import inspect
import logging
import os
import random
import sys
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import cv2
import numpy as np
import paddle
from paddle.io.dataloader.collate import default_collate_fn

from ..config.errors import ConfigError, check_mapping, did_you_mean
from ..errors import DataIntegrityError
from ..runtime_env import default_num_workers
from ..utils.builder import split_component
# imported for their registrations (datasets, samplers)
from . import cifar as _cifar, dataset as _dataset, multi_scale as _multi_scale  # noqa: F401
from . import multilabel_dataset as _multilabel_dataset, reid_dataset as _reid_dataset  # noqa: F401
from .batch_ops import build_batch_op
from .failures import BatchStatus, SampleFailure
from .registry import DATASETS, SAMPLERS
from .sampler import derive_seed

logger = logging.getLogger("ppfreeze")

_LOADER_KEYS = ("num_workers", "use_shared_memory")
# Below this much free /dev/shm, worker batches go through pipes (Docker's default is 64 MB: a few
# 224-px batches in flight fill it, and a worker that cannot write its batch dies).
_MIN_FREE_SHM = 1 << 30
SKIP_KEY = "skip_bad_images"


class EpochSeededDataset(paddle.io.Dataset):
    """Wraps a dataset so each sample's augmentation is a pure function of ``(seed, epoch, index)``."""

    def __init__(self, dataset: Any, seed: int = 0):
        super().__init__()
        self.dataset = dataset
        self.seed = int(seed)
        self.epoch = 0
        self.return_index = False  # set by the freeze feature cache, which keys activations by index
        self.return_seed = False  # set when batch ops follow: they seed from their samples' seeds

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch``."""
        self.epoch = int(epoch)

    @property
    def labels(self) -> List[int]:
        """Labels of the wrapped dataset."""
        return self.dataset.labels

    @property
    def class_num(self) -> int:
        """Class count of the wrapped dataset."""
        return self.dataset.class_num

    @property
    def transform_ops(self) -> Optional[List[Any]]:
        """The wrapped dataset's per-image ops, or None when it does not declare them."""
        ops = getattr(self.dataset, "transform_ops", None)
        return None if ops is None else list(ops)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: Any) -> Any:
        # MultiScaleSampler indexes with (width, height, index): the draws follow the image
        index = int(idx[-1]) if isinstance(idx, (tuple, list)) else idx
        sample_seed = derive_seed(self.seed, self.epoch, index)
        random.seed(sample_seed)
        np.random.seed(sample_seed)
        try:
            sample = tuple(self.dataset[idx])
        except Exception as error:  # noqa: BLE001  escaping here hangs Paddle's loader; re-raised in the main process
            return SampleFailure.capture(error, index)
        if self.return_index:
            sample += (np.int64(index),)
        if self.return_seed:
            sample += (np.int64(sample_seed),)
        return sample


# Mixed into batch seeds so they never coincide with a sample's seed.
_BATCH_SEED_DOMAIN = 0xBA7C5EED


class BatchTransformCollate:
    """Stack a list of samples into a batch, after PaddleClas batch ops (``dataset.batch_transform_ops``).

    With batch ops each sample ends with its seed (``EpochSeededDataset.return_seed``); the seeds
    are stripped and ``random`` / numpy's global RNG are reseeded from all of them before the ops
    run, so the ops' draws depend only on the batch, not on the process or what ran before.

    Never raises (see the module docstring): a failed sample (:class:`SampleFailure`) is dropped
    when ``skip_bad_images`` allows it, otherwise the batch becomes a fatal :class:`BatchStatus`
    that :class:`CheckedDataLoader` raises in the main process.
    """

    def __init__(self, batch_ops: Sequence[Callable], skip_bad_images: bool = False):
        self.batch_ops = list(batch_ops)
        self.skip_bad_images = skip_bad_images

    def __call__(self, batch: List[Any]) -> Any:
        failures = [s for s in batch if isinstance(s, SampleFailure)]
        if failures:
            fatal = [f for f in failures if not (self.skip_bad_images and f.skippable)]
            if fatal:
                return _status_batch(BatchStatus(fatal[:1], fatal=True))
            batch = [s for s in batch if not isinstance(s, SampleFailure)]
            if not batch:
                return _status_batch(BatchStatus(failures, empty=True))
        try:
            if self.batch_ops:
                seed = derive_seed(_BATCH_SEED_DOMAIN, *(int(sample[-1]) for sample in batch))
                batch = [tuple(sample[:-1]) for sample in batch]
                random.seed(seed)
                np.random.seed(seed)
                for op in self.batch_ops:
                    batch = op(batch)
            stacked = default_collate_fn(batch)
        except Exception as error:  # noqa: BLE001  same reason as EpochSeededDataset.__getitem__
            return _status_batch(BatchStatus([SampleFailure.capture(error, None)], fatal=True))
        return list(stacked) + [BatchStatus(failures)] if failures else stacked


def _status_batch(status: BatchStatus) -> List[Any]:
    # Paddle's queue wants at least one array per batch; the status itself travels as structure
    return [np.zeros((1,), dtype=np.uint8), status]


class CheckedDataLoader(paddle.io.DataLoader):
    """``paddle.io.DataLoader`` whose iteration raises loading failures in the main process.

    Args:
        key: the config section (``DataLoader.Train``), for messages.
        skip_bad_images: skip (and count) bad image files instead of stopping.
        **kwargs: ``paddle.io.DataLoader`` arguments.
    """

    def __init__(self, dataset: Any, key: str, skip_bad_images: bool = False, **kwargs: Any):
        super().__init__(dataset, **kwargs)
        self.key = key
        self.skip_bad_images = skip_bad_images
        self.bad_images: Dict[str, str] = {}   # path -> what was wrong, for every image skipped so far
        self.skipped_in_last_pass = 0

    def __iter__(self) -> Iterator[Any]:
        return self._checked(super().__iter__())

    def __call__(self) -> Iterator[Any]:
        return self.__iter__()

    def _checked(self, batches: Any) -> Iterator[Any]:
        self.skipped_in_last_pass = 0
        try:
            for batch in batches:
                status = batch[-1] if isinstance(batch, list) and batch and isinstance(batch[-1], BatchStatus) else None
                if status is None:
                    yield batch
                    continue
                if status.fatal:
                    raise status.failures[0].to_exception(f"{self.key}.dataset.{SKIP_KEY}")
                self._note_skipped(status.failures)
                if status.empty:
                    self._check_can_drop_batch(status)
                    continue
                yield batch[:-1]
        finally:
            shutdown = getattr(batches, "_try_shutdown_all", None)
            if shutdown is not None:
                shutdown()   # stop the reader thread / workers now, not at garbage collection
            if self.skipped_in_last_pass:
                logger.warning("%s: skipped %d bad image(s) in this pass (%d distinct so far; %s: true)",
                               self.key, self.skipped_in_last_pass, len(self.bad_images), SKIP_KEY)

    def _note_skipped(self, failures: List[SampleFailure]) -> None:
        self.skipped_in_last_pass += len(failures)
        for failure in failures:
            path = failure.fields["path"]
            if path not in self.bad_images:
                self.bad_images[path] = failure.describe()
                logger.warning("%s: skipping bad image %s", self.key, failure.describe())

    def _check_can_drop_batch(self, status: BatchStatus) -> None:
        # data-parallel ranks must take the same number of steps: one rank cannot drop a batch
        if paddle.distributed.get_world_size() > 1:
            raise DataIntegrityError(status.failures[0].fields["path"],
                                     f"every image of a batch is bad ({len(status.failures)} of them, e.g. "
                                     f"{status.failures[0].describe()}); a data-parallel rank cannot skip a "
                                     f"whole batch", "remove the bad images from the list")


def build_dataloader(cfg: Dict[str, Any], mode: str, seed: int = 0,
                     key: Optional[str] = None, class_num: Optional[int] = None) -> paddle.io.DataLoader:
    """Build the loader of ``cfg[mode]`` (``mode``: Train, Eval, or Query/Gallery of an Eval section).

    Args:
        cfg: the config's ``DataLoader`` section (or ``DataLoader.Eval`` for Query/Gallery).
        mode: which sub-section to build.
        seed: run seed; shuffling and augmentation derive from it.
        key: config path of ``cfg`` for error messages (default "DataLoader").
        class_num: the model's class count, for batch ops that make soft labels (mixup, cutmix).

    The loader's ``dataset`` is an :class:`EpochSeededDataset`; use :func:`set_loader_epoch`.
    With ``dataset.batch_transform_ops`` the labels of a batch are float32 ``[N, class_num]``
    soft targets (or, for a batch an ``OpSampler`` leaves alone, int64 ids).
    """
    key = key or "DataLoader"
    section = _mode_section(cfg, mode, key)
    mode_key = f"{key}.{mode}"
    dataset_cfg = dict(_required(section, "dataset", mode_key))
    batch_ops_cfg = dataset_cfg.pop("batch_transform_ops", None)
    skip_bad_images = dataset_cfg.pop(SKIP_KEY, False)
    if not isinstance(skip_bad_images, bool):
        raise ConfigError(f"{mode_key}.dataset.{SKIP_KEY}", f"expected true or false, got {skip_bad_images!r}")
    dataset = EpochSeededDataset(_build_dataset(dataset_cfg, f"{mode_key}.dataset", seed), seed)
    sampler = _build_sampler(_required(section, "sampler", mode_key), f"{mode_key}.sampler", dataset, seed)
    options = _loader_options(section.get("loader"), f"{mode_key}.loader")
    if options["num_workers"] > 0:
        _make_cv2_fork_safe()
    batch_ops = _build_batch_ops(batch_ops_cfg, f"{mode_key}.dataset.batch_transform_ops", class_num)
    if batch_ops:
        _check_even_batches(batch_ops, sampler, f"{mode_key}.sampler")
        dataset.return_seed = True
    return CheckedDataLoader(
        dataset,
        key=mode_key,
        skip_bad_images=skip_bad_images,
        batch_sampler=sampler,
        num_workers=options["num_workers"],
        use_shared_memory=options["use_shared_memory"],
        collate_fn=BatchTransformCollate(batch_ops, skip_bad_images),
        return_list=True,
    )


def batch_ops_of(loader: paddle.io.DataLoader) -> List[Callable]:
    """The batch ops ``loader`` applies (empty without ``batch_transform_ops``)."""
    return list(getattr(loader.collate_fn, "batch_ops", None) or [])


def set_loader_epoch(loader: paddle.io.DataLoader, epoch: int) -> None:
    """Make the next pass over ``loader`` use the shuffle order and augmentation of ``epoch``."""
    loader.batch_sampler.set_epoch(epoch)
    loader.dataset.set_epoch(epoch)


# A second pass over the loader within one epoch (Global.iter_per_epoch > len(loader)) draws
# its order and augmentation as "epoch" ``epoch + k * PASS_STRIDE``: distinct from every real epoch.
PASS_STRIDE = 1 << 20


def epoch_batches(loader: paddle.io.DataLoader, epoch: int, count: int) -> Iterator[Any]:
    """Exactly ``count`` batches for ``epoch``: the loader's pass for the epoch, continued with
    further passes (each seeded on its own) when ``count`` exceeds one pass, as PaddleClas's
    ``Global.iter_per_epoch`` does. Deterministic in ``(seed, epoch)``."""
    produced, k = 0, 0
    while produced < count:
        set_loader_epoch(loader, epoch + k * PASS_STRIDE)
        empty = True
        for batch in loader:
            empty = False
            yield batch
            produced += 1
            if produced >= count:
                return
        if empty:
            raise ConfigError("DataLoader.Train", "the training loader yields no batch",
                              "check the list file and that batch_size <= the number of images (drop_last)")
        k += 1


def random_transforms(loader: paddle.io.DataLoader) -> List[str]:
    """Names of the ops that make a training sample differ from epoch to epoch (empty: none do).

    A dataset that does not declare its ops counts as random; batch ops (mixup, cutmix) mix
    samples, so they always count.
    """
    ops = loader.dataset.transform_ops
    names = ["<undeclared ops>"] if ops is None else [type(op).__name__ for op in ops
                                                        if getattr(op, "is_random", True)]
    return names + [type(op).__name__ for op in batch_ops_of(loader)]


def set_return_index(loader: paddle.io.DataLoader, enabled: bool) -> None:
    """Make the loader's batches end with the samples' dataset indices (or stop doing so)."""
    loader.dataset.return_index = bool(enabled)


def _make_cv2_fork_safe() -> None:
    """Workers run OpenCV single-threaded, and forking them must not copy a live OpenCV pool.

    A worker forked while a pool thread waits for work inherits that wait's state; its first
    pool call (``cv2.setNumThreads`` included) then hangs. With 0 threads set here, before the
    workers are forked, OpenCV runs sequentially in this process and in the workers (which
    inherit the setting), so no worker ever touches the pool. Workers already run in parallel.
    """
    cv2.setNumThreads(0)


def _mode_section(cfg: Any, mode: str, key: str) -> Dict[str, Any]:
    if cfg is None:
        raise ConfigError(key, "section is missing",
                          f"add {key}: {{{mode}: {{dataset: ..., sampler: ..., loader: ...}}}}")
    if not isinstance(cfg, dict):
        raise ConfigError(key, f"expected a mapping with Train/Eval sections, got {type(cfg).__name__}")
    section = cfg.get(mode)
    if section is None:
        present = [k for k, v in cfg.items() if isinstance(v, dict)]
        raise ConfigError(f"{key}.{mode}", "section is missing",
                          f"present: {', '.join(present) or 'none'}.{did_you_mean(mode, present)}")
    if not isinstance(section, dict):
        raise ConfigError(f"{key}.{mode}", f"expected a mapping with dataset/sampler/loader, got {section!r}")
    return section


def _required(section: Dict[str, Any], name: str, key: str) -> Any:
    value = section.get(name)
    if not isinstance(value, dict):
        found = "nothing" if value is None else repr(value)
        example = {"dataset": "{name: ImageNetDataset, image_root: ..., cls_label_path: ..., transform_ops: [...]}",
                   "sampler": "{name: DistributedBatchSampler, batch_size: 64, shuffle: true, drop_last: false}"}
        raise ConfigError(f"{key}.{name}", f"expected a mapping, found {found}", f"e.g. {example[name]}")
    return value


def _build_dataset(dataset_cfg: Dict[str, Any], key: str, seed: int) -> Any:
    # datasets with a `seed` argument (e.g. Cifar10's sample_per_label draw) get the run's seed
    name = split_component(dataset_cfg, key)[0]
    takes_seed = "seed" in inspect.signature(DATASETS.get(name, f"{key}.name")).parameters
    return DATASETS.build(dataset_cfg, key, **({"seed": seed} if takes_seed else {}))


def _build_sampler(sampler_cfg: Dict[str, Any], key: str, dataset: Any, seed: int) -> Any:
    # PaddleClas: a sampler section without a name means plain batching.
    if "name" not in sampler_cfg and not (len(sampler_cfg) == 1 and next(iter(sampler_cfg)) in SAMPLERS):
        sampler_cfg = {"name": "BatchSampler", **sampler_cfg}
    return SAMPLERS.build(sampler_cfg, key, dataset=dataset, seed=seed)


def _loader_options(loader_cfg: Optional[Dict[str, Any]], key: str) -> Dict[str, Any]:
    """``num_workers`` and ``use_shared_memory``; unset, the defaults of docs/design.md (data loading)."""
    loader_cfg = loader_cfg or {}
    check_mapping(loader_cfg, key, list(_LOADER_KEYS), "{num_workers: 2, use_shared_memory: true}",
                  "loader option")
    options = {k: v for k, v in loader_cfg.items() if v is not None}
    defaulted = [k for k in _LOADER_KEYS if k not in options]
    workers = options.setdefault("num_workers", default_num_workers())
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"{key}.num_workers", f"expected an integer >= 0, got {workers!r}")
    shared = options.setdefault("use_shared_memory", workers > 0 and _shared_memory_fits())
    if not isinstance(shared, bool):
        raise ConfigError(f"{key}.use_shared_memory", f"expected true or false, got {shared!r}")
    if defaulted:
        logger.info("%s: num_workers %d, use_shared_memory %s (%s by default; docs/design.md)", key, workers,
                    str(shared).lower(), " and ".join(defaulted))
    if workers > 0 and shared and sys.platform.startswith("linux") and not _shared_memory_fits():
        logger.warning("%s.use_shared_memory: /dev/shm has less than %d MB free; workers whose batches do not "
                       "fit die (set use_shared_memory: false, or give the container more, e.g. docker "
                       "--shm-size=2g)", key, _MIN_FREE_SHM >> 20)
    return options


def _shared_memory_fits() -> bool:
    """Linux with at least ``_MIN_FREE_SHM`` free in /dev/shm (where Paddle puts worker batches)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        stat = os.statvfs("/dev/shm")
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize >= _MIN_FREE_SHM


def _build_batch_ops(op_cfgs: Optional[List[Any]], key: str, class_num: Optional[int]) -> List[Callable]:
    if not op_cfgs:
        return []
    if not isinstance(op_cfgs, list):
        raise ConfigError(key, f"expected a list of batch ops such as [{{MixupOperator: {{alpha: 0.2}}}}], "
                               f"got {type(op_cfgs).__name__}")
    return [build_batch_op(op_cfg, f"{key}[{i}]", class_num) for i, op_cfg in enumerate(op_cfgs)]


def _check_even_batches(batch_ops: List[Callable], sampler: Any, key: str) -> None:
    """Ops that mix a batch with its reverse need every batch even; say so before training."""
    needy = [type(op).__name__ for op in batch_ops if getattr(op, "needs_even_batch", False)]
    batch_size = getattr(sampler, "batch_size", None)
    if not needy or batch_size is None:
        return
    if batch_size % 2:
        raise ConfigError(f"{key}.batch_size", f"is {batch_size}, but {needy[0]} needs even batches",
                          "use an even batch_size")
    last = getattr(sampler, "num_samples", 0) % batch_size
    if last % 2 and not getattr(sampler, "drop_last", False):
        raise ConfigError(f"{key}.drop_last", f"the last batch would have {last} samples, but {needy[0]} needs "
                                              f"even batches", "set drop_last: true")
