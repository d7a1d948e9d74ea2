"""Classification post-processing (pure numpy: deploy tools use it without paddle)."""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..config.errors import ConfigError
from .registry import POSTPROCESS


def read_class_id_map(path: str, delimiter: Optional[str] = None,
                      key: str = "class_id_map_file") -> Dict[int, str]:
    """Read ``id name`` lines (the name may contain the delimiter); blank lines are skipped."""
    if not isinstance(path, str) or not os.path.isfile(path):
        raise ConfigError(key, f"class id map file {path!r} does not exist")
    sep = " " if delimiter is None else delimiter
    id_map = {}
    with open(path, "r", encoding="utf-8") as f:
        for line_no, raw in enumerate(f, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            class_id, found, name = line.partition(sep)
            try:
                id_map[int(class_id)] = name.strip() if found else ""
            except ValueError:
                raise ConfigError(key, f"{path}:{line_no}: expected 'class_id{sep}name' with an integer id, "
                                       f"got {line!r}") from None
            if not found:
                raise ConfigError(key, f"{path}:{line_no}: expected 'class_id{sep}name', got {line!r} "
                                       f"(no {sep!r} separator)")
    return id_map


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    shifted = x - x.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def looks_like_probabilities(x: np.ndarray, atol: float = 1e-3) -> bool:
    """True when every row lies in [0, 1] and sums to 1 (a model exported with its softmax)."""
    return bool(np.all(x >= -atol) and np.all(x <= 1 + atol)
                and np.allclose(x.sum(axis=-1), 1.0, atol=atol))


@POSTPROCESS.register
class Topk:
    """Top-k classes per row.

    PaddleClas's training-side Topk always applies softmax, its deploy-side Topk never does
    (exported models end in a softmax). We apply it only when the rows are not already
    probabilities, so both logits and exported-model outputs give the right scores.

    Args:
        topk: how many classes to return per image.
        class_id_map_file: optional ``id name`` file giving label names.
        delimiter: separator between id and name (default one space).
    """

    def __init__(self, topk: int = 5, class_id_map_file: Optional[str] = None,
                 delimiter: Optional[str] = None):
        if isinstance(topk, bool) or not isinstance(topk, int) or topk <= 0:
            raise ConfigError("topk", f"expected a positive integer, got {topk!r}")
        self.topk = topk
        self.class_id_map_file = class_id_map_file
        self.class_id_map = (read_class_id_map(class_id_map_file, delimiter)
                             if class_id_map_file is not None else None)

    def __call__(self, logits: Any, file_names: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
        """``logits``: [N, C] array (or a dict with 'logits'); returns one dict per row."""
        if isinstance(logits, dict):
            logits = logits["logits"]
        x = np.asarray(logits, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"Topk expects [N, C] scores, got shape {x.shape}")
        if file_names is not None and len(file_names) != x.shape[0]:
            raise ValueError(f"Topk got {x.shape[0]} rows but {len(file_names)} file names")
        probs = x if looks_like_probabilities(x) else softmax(x)
        k = min(self.topk, x.shape[1])
        # Stable sort on the negated scores: ties keep the lower class id first.
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [self._result(probs[row], order[row], file_names[row] if file_names is not None else None)
                for row in range(x.shape[0])]

    def _result(self, probs: np.ndarray, ids: np.ndarray, file_name: Optional[str]) -> Dict[str, Any]:
        class_ids = [int(i) for i in ids]
        return {
            "class_ids": class_ids,
            "scores": [round(float(probs[i]), 5) for i in class_ids],
            "label_names": self._names(class_ids),
            "file_name": file_name,
        }

    def _names(self, class_ids: List[int]) -> List[str]:
        if self.class_id_map is None:
            return []
        missing = [i for i in class_ids if i not in self.class_id_map]
        if missing:
            raise ConfigError("class_id_map_file", f"class ids {missing} are not in {self.class_id_map_file}",
                              "the map must list every class the model predicts")
        return [self.class_id_map[i] for i in class_ids]
