"""Batch samplers whose shuffle order is a pure function of ``(seed, epoch)``.

PaddleClas configs name ``DistributedBatchSampler`` (``batch_size``, ``shuffle``,
``drop_last``); the dataset and the run's seed come from the loader, not the user.
Paddle's own sampler seeds its shuffle with the epoch alone and advances the epoch after
every pass; ours mixes in the run seed and honours ``set_epoch`` exactly.
"""
from __future__ import annotations

from typing import Iterator, List, Sized

import numpy as np
import paddle

from ..config.errors import ConfigError
from .registry import SAMPLERS


def derive_seed(*parts: int) -> int:
    """A well-mixed 32-bit seed from integers such as ``(seed, epoch, index)``."""
    words = [int(p) % (1 << 64) for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def _check_batch_args(batch_size, shuffle, drop_last) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ConfigError("batch_size", f"expected a positive integer, got {batch_size!r}")
    for key, value in (("shuffle", shuffle), ("drop_last", drop_last)):
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {value!r}")


@SAMPLERS.register
class DistributedBatchSampler(paddle.io.DistributedBatchSampler):
    """Shards the dataset over ranks (one rank when not distributed) and batches it.

    Args:
        dataset: the dataset (given by the loader).
        batch_size: samples per batch on each rank.
        shuffle: reshuffle every epoch from ``(seed, epoch)``.
        drop_last: drop the last incomplete batch.
        seed: the run's seed (given by the loader).
        num_replicas, rank: override the distributed environment (tests, tools).
    """

    def __init__(self, dataset: Sized, batch_size: int, shuffle: bool = False, drop_last: bool = False,
                 seed: int = 0, num_replicas: int = None, rank: int = None):
        _check_batch_args(batch_size, shuffle, drop_last)
        super().__init__(dataset, batch_size, num_replicas=num_replicas, rank=rank,
                         shuffle=shuffle, drop_last=drop_last)
        self.seed = int(seed)
        self.current_epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass use the order of ``epoch``."""
        self.current_epoch = int(epoch)

    def __iter__(self) -> Iterator[List[int]]:
        # Paddle's parent shuffles with RandomState(self.epoch); feed it our mixed seed.
        self.epoch = derive_seed(self.seed, self.current_epoch)
        yield from super().__iter__()
        # Without set_epoch calls, consecutive passes still differ (as with Paddle's sampler).
        self.current_epoch += 1


@SAMPLERS.register
class BatchSampler(DistributedBatchSampler):
    """Single-process batching over the whole dataset (no sharding, no padding)."""

    def __init__(self, dataset: Sized, batch_size: int, shuffle: bool = False, drop_last: bool = False,
                 seed: int = 0):
        super().__init__(dataset, batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed,
                         num_replicas=1, rank=0)

