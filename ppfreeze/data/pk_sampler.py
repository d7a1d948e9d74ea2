"""P x K identity batches for metric learning, covering every image once per epoch.

Each batch holds ``P = batch_size / K`` identities with ``K = sample_per_id`` images each,
so every anchor has positives and negatives in its batch (triplet mining needs both).

One epoch, drawn from ``(seed, epoch)``:

1. every identity's images are shuffled and cut into groups of K; a last partial group is
   completed with other images of the same identity (with replacement when the identity
   has fewer than K images);
2. batches take P groups of P different identities. An identity with many groups spreads
   over several batches; the batch count is ``max(ceil(groups / P), most groups of one
   identity)``; slots left over are filled with extra groups drawn like step 1.

Hence every image appears at least once per epoch and every batch is full. numpy only (no
paddle import): ``ppfreeze.data`` registers it without loading the training stack.

With ``sample_method: id_avg_prob`` or ``id_list`` / ``ratio`` (PaddleClas's identity weighting)
the batches are drawn as PaddleClas draws them instead: each batch takes P different identities
at random with the configured probabilities, then K images of each (with replacement only when an
identity has fewer than K); an epoch has as many batches as the dataset has images / batch_size.
Not every image is then seen each epoch, which is what such weighting asks for.
"""
from __future__ import annotations

import math
import os
from typing import Any, Dict, Iterator, List, Optional

import numpy as np

from ..config.errors import ConfigError
from .registry import SAMPLERS


@SAMPLERS.register
class PKSampler:
    """Batch sampler of P identities x K samples; see the module docstring.

    Args:
        dataset: needs ``.labels`` (given by the loader).
        batch_size: P * K.
        sample_per_id: K, a divisor of ``batch_size``.
        shuffle: shuffle images and batches every epoch; false keeps the file order where
            it can (completing groups still draws at random, from the seed).
        drop_last: true: every batch is full (extra groups fill the free slots); false: no
            extra groups, so some batches may hold fewer identities. No image is dropped either way.
        sample_method: PaddleClas's "sample_avg_prob" (identities appear in proportion to their
            images, which covering every image implies) or "id_avg_prob" (every identity equally
            likely; batches drawn, see the module docstring).
        id_list: PaddleClas's ``[start, end, start, end, ...]`` ranges of identity positions (in order
            of first appearance in the dataset, inclusive) whose probability is multiplied by the
            matching ``ratio`` entry (batches drawn, see the module docstring).
        ratio: one multiplier per range of ``id_list``.
        total_epochs: PaddleClas's shuffle seed component; accepted, unused (draws follow the seed).
        seed: the run's seed (given by the loader).
        num_replicas, rank: split batches over ranks (default: paddle.distributed.launch's
            ``PADDLE_TRAINERS_NUM`` / ``PADDLE_TRAINER_ID``).
    """

    def __init__(self, dataset: Any, batch_size: int, sample_per_id: int, shuffle: bool = True,
                 drop_last: bool = True, sample_method: str = "sample_avg_prob", id_list: Optional[List[int]] = None,
                 ratio: Optional[List[float]] = None, total_epochs: int = 0, seed: int = 0,
                 num_replicas: Optional[int] = None, rank: Optional[int] = None):
        _check_args(batch_size, sample_per_id, shuffle, drop_last, sample_method)
        self.batch_size = batch_size
        self.sample_per_id = sample_per_id
        self.ids_per_batch = batch_size // sample_per_id
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = int(seed)
        self.members = _members_by_label(dataset)
        if self.ids_per_batch > len(self.members):
            raise ConfigError("batch_size", f"{self.ids_per_batch} identities per batch (batch_size / "
                                            f"sample_per_id) but the dataset has only {len(self.members)}",
                              "lower batch_size or raise sample_per_id")
        self.num_replicas = int(os.environ.get("PADDLE_TRAINERS_NUM", 1)) if num_replicas is None else num_replicas
        self.rank = int(os.environ.get("PADDLE_TRAINER_ID", 0)) if rank is None else rank
        self.groups_per_id = {label: math.ceil(len(idx) / sample_per_id) for label, idx in self.members.items()}
        self.num_batches = self._count_batches()
        self.current_epoch = 0
        self.draw_probabilities = None
        if sample_method == "id_avg_prob" or id_list or ratio:
            self.draw_probabilities = _identity_probabilities(dataset, self.members, sample_method, id_list, ratio)
            n = len(dataset.labels)
            self.num_batches = n // batch_size if drop_last else math.ceil(n / batch_size)
            if self.num_batches < 1:
                raise ConfigError("batch_size", f"is {batch_size}, more than the {n} images with drop_last: true")

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass use the draws of ``epoch``."""
        self.current_epoch = int(epoch)

    def __len__(self) -> int:
        return math.ceil(self.num_batches / self.num_replicas)

    def __iter__(self) -> Iterator[List[int]]:
        rng = np.random.default_rng([self.seed % (1 << 63), self.current_epoch])
        batches = self.drawn_batches(rng) if self.draw_probabilities is not None else self.epoch_batches(rng)
        # every rank gets the same number of batches: wrap around for the last ones
        padded = [batches[i % len(batches)] for i in range(len(self) * self.num_replicas)]
        yield from padded[self.rank::self.num_replicas]
        self.current_epoch += 1  # without set_epoch, consecutive passes still differ

    def epoch_batches(self, rng: np.random.Generator) -> List[List[int]]:
        """All batches of one epoch (every rank's), as lists of dataset indices."""
        labels = list(self.members)
        groups = {label: self._groups_of(label, rng) for label in labels}
        slots = self.num_batches * self.ids_per_batch
        missing = slots - sum(len(g) for g in groups.values())
        if self.drop_last:
            for label in self._padding_labels(missing, rng):
                groups[label].append(self._extra_group(label, rng))
        order = rng.permutation(len(labels)) if self.shuffle else range(len(labels))
        # Lay each identity's groups out as one contiguous run and deal position p to batch
        # p % num_batches: a run is never longer than num_batches, so identities in a batch differ.
        runs = [group for i in order for group in groups[labels[i]]]
        batches: List[List[int]] = [[] for _ in range(self.num_batches)]
        for position, group in enumerate(runs):
            batches[position % self.num_batches].extend(group)
        batches = [b for b in batches if b]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def drawn_batches(self, rng: np.random.Generator) -> List[List[int]]:
        """PaddleClas's draws: per batch P identities by ``draw_probabilities``, K images of each."""
        labels, probs = list(self.draw_probabilities), np.array(list(self.draw_probabilities.values()))
        batches = []
        for _ in range(self.num_batches):
            batch: List[int] = []
            for i in rng.choice(len(labels), size=self.ids_per_batch, replace=False, p=probs):
                members = self.members[labels[i]]
                batch += [int(j) for j in rng.choice(members, size=self.sample_per_id,
                                                     replace=len(members) < self.sample_per_id)]
            batches.append(batch)
        return batches

    def _count_batches(self) -> int:
        groups = sum(self.groups_per_id.values())
        return max(math.ceil(groups / self.ids_per_batch), max(self.groups_per_id.values()))

    def _groups_of(self, label: Any, rng: np.random.Generator) -> List[List[int]]:
        indices = self.members[label]
        if self.shuffle:
            indices = rng.permutation(indices)
        k = self.sample_per_id
        groups = [list(indices[i:i + k]) for i in range(0, len(indices), k)]
        short = k - len(groups[-1])
        if short:
            groups[-1] += self._draw(label, short, rng, exclude=groups[-1])
        return [[int(i) for i in g] for g in groups]

    def _extra_group(self, label: Any, rng: np.random.Generator) -> List[int]:
        return [int(i) for i in self._draw(label, self.sample_per_id, rng, exclude=[])]

    def _draw(self, label: Any, n: int, rng: np.random.Generator, exclude: List[int]) -> List[int]:
        """``n`` images of ``label``: unseen ones without replacement when enough exist."""
        pool = np.setdiff1d(self.members[label], exclude)
        if len(pool) >= n:
            return list(rng.choice(pool, size=n, replace=False))
        return list(rng.choice(self.members[label], size=n, replace=True))

    def _padding_labels(self, missing: int, rng: np.random.Generator) -> List[Any]:
        """Identities that get one extra group each, never past ``num_batches`` groups."""
        room = {label: self.num_batches - g for label, g in self.groups_per_id.items()}
        chosen: List[Any] = []
        while len(chosen) < missing:
            open_labels = [label for label, r in room.items() if r > 0]
            take = [open_labels[i] for i in rng.permutation(len(open_labels))][:missing - len(chosen)]
            for label in take:
                room[label] -= 1
            chosen += take
        return chosen


@SAMPLERS.register
class DistributedRandomIdentitySampler(PKSampler):
    """PaddleClas's name and arguments for the P x K sampler (``num_instances`` = K)."""

    def __init__(self, dataset: Any, batch_size: int, num_instances: int, drop_last: bool = True,
                 shuffle: bool = True, seed: int = 0):
        try:
            super().__init__(dataset, batch_size, sample_per_id=num_instances, shuffle=shuffle,
                             drop_last=drop_last, seed=seed)
        except ConfigError as e:
            if e.key != "sample_per_id":
                raise
            raise ConfigError("num_instances", e.message, e.hint) from None


@SAMPLERS.register
class NaiveIdentityBatchSampler(DistributedRandomIdentitySampler):
    """PaddleClas's MetaBIN name for P x K batches (``num_instances`` = K); always shuffled.

    PaddleClas draws its identities without covering every image and runs as an endless
    stream; here an epoch covers every image (see the module docstring).
    """

    def __init__(self, dataset: Any, batch_size: int, num_instances: int, drop_last: bool = True, seed: int = 0):
        super().__init__(dataset, batch_size, num_instances, drop_last=drop_last, shuffle=True, seed=seed)


def _members_by_label(dataset: Any) -> Dict[Any, np.ndarray]:
    labels = getattr(dataset, "labels", None)
    if labels is None or len(labels) == 0:
        raise ConfigError("dataset", f"{type(dataset).__name__} has no labels; a P x K sampler groups "
                                     "samples by label", "use a labelled dataset such as ImageNetDataset")
    labels = np.asarray(labels).reshape(-1)
    return {label: np.flatnonzero(labels == label) for label in np.unique(labels)}


def _identity_probabilities(dataset: Any, members: Dict[Any, np.ndarray], sample_method: str,
                            id_list: Optional[List[int]], ratio: Optional[List[float]]) -> Dict[Any, float]:
    """Identity -> draw probability, in order of first appearance (PaddleClas's ``id_list`` positions)."""
    order = list(dict.fromkeys(np.asarray(dataset.labels).reshape(-1).tolist()))
    weights = np.array([1.0 if sample_method == "id_avg_prob" else len(members[label]) for label in order])
    if id_list or ratio:
        if not isinstance(id_list, list) or not isinstance(ratio, list) or len(id_list) != 2 * len(ratio):
            raise ConfigError("id_list", f"expected [start, end, ...] with two entries per ratio, got id_list "
                                         f"{id_list!r} and ratio {ratio!r}")
        for position in range(len(order)):
            for j, r in enumerate(ratio):
                if id_list[2 * j] <= position <= id_list[2 * j + 1]:
                    weights[position] *= float(r)
                    break
    return dict(zip(order, (weights / weights.sum()).tolist()))


def _check_args(batch_size: Any, sample_per_id: Any, shuffle: Any, drop_last: Any, sample_method: Any) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ConfigError("batch_size", f"expected a positive integer, got {batch_size!r}")
    if isinstance(sample_per_id, bool) or not isinstance(sample_per_id, int) or sample_per_id <= 0 \
            or batch_size % sample_per_id:
        raise ConfigError("sample_per_id", f"expected a positive divisor of batch_size {batch_size}, "
                                           f"got {sample_per_id!r}", "e.g. batch_size: 32, sample_per_id: 4")
    for key, value in (("shuffle", shuffle), ("drop_last", drop_last)):
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {value!r}")
    if sample_method not in ("sample_avg_prob", "id_avg_prob"):
        raise ConfigError("sample_method", f"expected sample_avg_prob or id_avg_prob, got {sample_method!r}")
