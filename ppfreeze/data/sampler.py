"""Batch samplers whose shuffle order is a pure function of ``(seed, epoch)``.

PaddleClas configs name ``DistributedBatchSampler`` (``batch_size``, ``shuffle``,
``drop_last``); the dataset and the run's seed come from the loader, not the user.
Paddle's own sampler seeds its shuffle with the epoch alone and advances the epoch after
every pass; ours mixes in the run seed and honours ``set_epoch`` exactly.
"""
from __future__ import annotations

import math
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



@SAMPLERS.register
class RASampler(DistributedBatchSampler):
    """Repeated augmentation (DeiT; PaddleClas ``RASampler``): every image ``num_repeats`` times per epoch.

    The (shuffled) index list repeats each index ``num_repeats`` times in a row, is padded to a
    multiple of the ranks and dealt round-robin, so the copies of an image land on different
    ranks (or side by side in one batch on a single process), each with its own augmentation.
    Each rank then keeps only ``floor(N / 256) * 256 / ranks`` indices, so an epoch is as long
    as a plain one (N images) rounded down to a multiple of 256 -- a dataset of fewer than 256
    images gives no batch, which is refused.

    Args:
        dataset: the dataset (given by the loader).
        batch_size: samples per batch on each rank.
        num_replicas, rank: override the distributed environment.
        shuffle: reshuffle every epoch from ``(seed, epoch)``.
        drop_last: drop the last incomplete batch.
        num_repeats: copies of each image per epoch.
        seed: the run's seed (given by the loader).
    """

    def __init__(self, dataset: Sized, batch_size: int, num_replicas: int = None, rank: int = None,
                 shuffle: bool = False, drop_last: bool = False, num_repeats: int = 3, seed: int = 0):
        super().__init__(dataset, batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed,
                         num_replicas=num_replicas, rank=rank)
        if isinstance(num_repeats, bool) or not isinstance(num_repeats, int) or num_repeats < 1:
            raise ConfigError("num_repeats", f"expected a positive integer, got {num_repeats!r}")
        self.num_repeats = num_repeats
        self.num_samples = int(math.ceil(len(dataset) * num_repeats / self.nranks))
        self.total_size = self.num_samples * self.nranks
        self.num_selected = int(math.floor(len(dataset) // 256 * 256 / self.nranks))
        if len(self) == 0:
            raise ConfigError("batch_size", f"RASampler keeps floor(N / 256) * 256 / ranks = {self.num_selected} "
                                            f"images per rank of the {len(dataset)}, too few for one batch of "
                                            f"{batch_size}", "use DistributedBatchSampler for small datasets")

    def __iter__(self) -> Iterator[List[int]]:
        indices = np.arange(len(self.dataset))
        if self.shuffle:
            np.random.RandomState(derive_seed(self.seed, self.current_epoch)).shuffle(indices)
        self.current_epoch += 1
        repeated = np.repeat(indices, self.num_repeats).tolist()
        repeated += repeated[:self.total_size - len(repeated)]
        mine = repeated[self.local_rank:self.total_size:self.nranks][:self.num_selected]
        for start in range(0, len(mine), self.batch_size):
            batch = mine[start:start + self.batch_size]
            if len(batch) == self.batch_size or not self.drop_last:
                yield batch

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_selected // self.batch_size
        return math.ceil(self.num_selected / self.batch_size)
