"""Metrics of a whole evaluation set (not an average of per-batch values), and numpy helpers.

PaddleClas's ``TprAtFpr``, ``MultiLabelMAP`` and ``ATTRMetric`` rank or count over every
evaluated sample. An :class:`EpochMetric` stores each batch's outputs and labels as numpy
arrays (``update``) and evaluates them at the end (``compute``). Called like a per-batch
metric (``Metric.Train``), it returns nothing and stores nothing: such metrics are only
reported by evaluation.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from ..loss.celoss import logits_of

Batch = Tuple[np.ndarray, np.ndarray]


def to_numpy(x: Any) -> np.ndarray:
    """A paddle Tensor (or array-like) as a numpy array."""
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def sigmoid32(x: np.ndarray) -> np.ndarray:
    """Logistic function in float32 (what PaddleClas's metrics threshold), stable for large |x|."""
    x = np.asarray(x, dtype=np.float32)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, np.float32(1) / (np.float32(1) + e), e / (np.float32(1) + e)).astype(np.float32)


def softmax32(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32."""
    x = np.asarray(x, dtype=np.float32)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def first_label_row(target: np.ndarray) -> np.ndarray:
    """``[N, C]`` labels of ``[N, C]`` targets or ``[N, 2, C]`` ones (labels + class ratios)."""
    return target[:, 0, :] if target.ndim == 3 else target


class EpochMetric:
    """Base class: accumulate ``(outputs, labels)`` per batch, compute once per evaluation."""

    def __init__(self) -> None:
        self._batches: List[Batch] = []

    def reset(self) -> None:
        """Forget the stored batches (call before an evaluation)."""
        self._batches = []

    def update(self, output: Any, label: Any) -> None:
        """Store one batch: the model output's logits and the labels, as numpy arrays."""
        self._batches.append((to_numpy(logits_of(output)), to_numpy(label)))

    def __call__(self, output: Any, label: Any) -> Dict[str, float]:
        return {}

    @property
    def batches(self) -> List[Batch]:
        """The stored ``(logits, labels)`` batches, in evaluation order."""
        return self._batches

    def merge_ranks(self, per_rank: Sequence[List[Batch]], num_samples: int) -> None:
        """Replace the batches by every rank's (``per_rank[r]``), in global sample order.

        DistributedBatchSampler deals batch ``i`` of every rank from one contiguous stretch
        of the (unshuffled) index list and pads its end with repeated samples: interleaving
        the ranks' batches restores the order, and cutting at ``num_samples`` drops the padding.
        """
        merged, kept = [], 0
        for i in range(max(len(batches) for batches in per_rank)):
            for batches in per_rank:
                if i < len(batches) and kept < num_samples:
                    logits, labels = batches[i]
                    take = min(len(logits), num_samples - kept)
                    merged.append((logits[:take], labels[:take]))
                    kept += take
        self._batches = merged

    def compute(self) -> Dict[str, float]:
        """The metric values over every stored sample."""
        raise NotImplementedError

    def _stacked(self) -> Batch:
        if not self._batches:
            raise ValueError(f"{type(self).__name__}: no batch was evaluated")
        return (np.concatenate([b[0] for b in self._batches]), np.concatenate([b[1] for b in self._batches]))
