"""Classification post-processing (pure numpy: deploy tools use it without paddle).

``Infer.PostProcess`` turns model outputs into one result dict per image. The same classes
serve ``tools/infer.py`` (raw logits) and the deploy predictor (outputs of an exported
model, which may already end in a softmax or sigmoid): each class applies its activation
only when the input is not already probabilities, see ``from_logits``.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..config.errors import ConfigError
from ..utils.text import iter_text_lines
from .registry import POSTPROCESS


def read_class_id_map(path: str, delimiter: Optional[str] = None,
                      key: str = "class_id_map_file") -> Dict[int, str]:
    """Read ``id name`` lines (the name may contain the delimiter); blank lines are skipped."""
    if not isinstance(path, str) or not os.path.isfile(path):
        raise ConfigError(key, f"class id map file {path!r} does not exist")
    sep = " " if delimiter is None else delimiter
    id_map = {}
    for line_no, line in iter_text_lines(path, key):
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


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Element-wise logistic function, stable for large |x|."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def scores_2d(x: Any, who: str) -> np.ndarray:
    """Model output (array, or dict with 'logits') as a float64 ``[N, C]`` array."""
    if isinstance(x, dict):
        x = x["logits"]
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{who} expects [N, C] scores, got shape {x.shape}")
    return x


def check_from_logits(from_logits: Any) -> Optional[bool]:
    """``from_logits``: true (apply the activation), false (inputs are probabilities) or null (detect)."""
    if from_logits is not None and not isinstance(from_logits, bool):
        raise ConfigError("from_logits", f"expected true, false or null, got {from_logits!r}")
    return from_logits


def softmax_probs(x: np.ndarray, from_logits: Optional[bool]) -> np.ndarray:
    """Softmax of ``x`` unless it is already probabilities (rows in [0, 1] summing to 1 when detecting)."""
    as_logits = (not looks_like_probabilities(x)) if from_logits is None else from_logits
    return softmax(x) if as_logits else x


def sigmoid_probs(x: np.ndarray, from_logits: Optional[bool]) -> np.ndarray:
    """Sigmoid of ``x`` unless it is already probabilities (every value in [0, 1] when detecting)."""
    as_logits = (not bool(np.all((x >= 0) & (x <= 1)))) if from_logits is None else from_logits
    return sigmoid(x) if as_logits else x


def check_names(file_names: Optional[Sequence[str]], rows: int, who: str) -> None:
    """``file_names``, when given, must name every row."""
    if file_names is not None and len(file_names) != rows:
        raise ValueError(f"{who} got {rows} rows but {len(file_names)} file names")


def with_file_name(result: Dict[str, Any], file_names: Optional[Sequence[str]], row: int) -> Dict[str, Any]:
    """Add ``file_name`` when file names were given (PaddleClas's result layout)."""
    if file_names is not None:
        result["file_name"] = file_names[row]
    return result


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


def _check_threshold(value: Any, key: str = "threshold") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(key, f"expected a number, got {value!r}")
    return float(value)


@POSTPROCESS.register
class ThreshOutput:
    """Thresholded class decision (PaddleClas ``ThreshOutput``, the PULC binary tasks).

    Two classes: class 1 when its probability is at least ``threshold``, with that score,
    else class 0 with score ``1 - p1``; label names ``label_0`` / ``label_1``. More classes
    (PaddleClas's deploy form): the top class when its probability exceeds ``threshold``,
    else ``default_label_index``; names from ``class_id_map_file``.

    Args:
        threshold: decision threshold on the probability.
        default_label_index: class returned when no class is confident enough (more than 2 classes).
        label_0, label_1: names of the two classes.
        class_id_map_file, delimiter: ``id name`` file for more than 2 classes.
        from_logits: true: inputs are logits (softmax applied); false: probabilities; null:
            detect (rows in [0, 1] summing to 1 are probabilities).
    """

    def __init__(self, threshold: float = 0.0, default_label_index: int = 0, label_0: str = "0",
                 label_1: str = "1", class_id_map_file: Optional[str] = None, delimiter: Optional[str] = None,
                 from_logits: Optional[bool] = None):
        self.threshold = _check_threshold(threshold)
        if isinstance(default_label_index, bool) or not isinstance(default_label_index, int):
            raise ConfigError("default_label_index", f"expected a class id, got {default_label_index!r}")
        self.default_label_index = default_label_index
        self.label_0, self.label_1 = str(label_0), str(label_1)
        self.class_id_map = read_class_id_map(class_id_map_file, delimiter) if class_id_map_file else None
        self.from_logits = check_from_logits(from_logits)

    def __call__(self, x: Any, file_names: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
        probs = softmax_probs(scores_2d(x, "ThreshOutput"), self.from_logits)
        check_names(file_names, len(probs), "ThreshOutput")
        decide = self._binary if probs.shape[1] == 2 else self._multi_class
        return [with_file_name(decide(row), file_names, i) for i, row in enumerate(probs)]

    def _binary(self, probs: np.ndarray) -> Dict[str, Any]:
        p1 = float(probs[1])
        if p1 < self.threshold:
            return {"class_ids": [0], "scores": [1.0 - p1], "label_names": [self.label_0]}
        return {"class_ids": [1], "scores": [p1], "label_names": [self.label_1]}

    def _multi_class(self, probs: np.ndarray) -> Dict[str, Any]:
        top = int(np.argmax(probs))
        class_id = top if probs[top] > self.threshold else self.default_label_index
        name = self.class_id_map.get(class_id, "") if self.class_id_map is not None else ""
        return {"class_ids": [class_id], "scores": [float(probs[class_id])], "label_names": [name]}


@POSTPROCESS.register
class MultiLabelThreshOutput:
    """Every class whose sigmoid probability is at least ``threshold`` (PaddleClas ``MultiLabelThreshOutput``).

    Args:
        threshold: per-class decision threshold.
        class_id_map_file, delimiter: optional ``id name`` file giving label names.
        from_logits: true: inputs are logits (sigmoid applied); false: probabilities; null:
            detect (every value in [0, 1] means probabilities).
    """

    def __init__(self, threshold: float = 0.5, class_id_map_file: Optional[str] = None,
                 delimiter: Optional[str] = None, from_logits: Optional[bool] = None):
        self.threshold = _check_threshold(threshold)
        self.class_id_map_file = class_id_map_file
        self.class_id_map = read_class_id_map(class_id_map_file, delimiter) if class_id_map_file else None
        self.from_logits = check_from_logits(from_logits)

    def __call__(self, x: Any, file_names: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
        probs = sigmoid_probs(scores_2d(x, "MultiLabelThreshOutput"), self.from_logits)
        check_names(file_names, len(probs), "MultiLabelThreshOutput")
        results = []
        for i, row in enumerate(probs):
            ids = [int(c) for c in np.flatnonzero(row >= self.threshold)]
            results.append(with_file_name({"class_ids": ids, "scores": [round(float(row[c]), 5) for c in ids],
                                           "label_names": self._names(ids)}, file_names, i))
        return results

    def _names(self, ids: List[int]) -> List[str]:
        if self.class_id_map is None:
            return []
        missing = [i for i in ids if i not in self.class_id_map]
        if missing:
            raise ConfigError("class_id_map_file", f"class ids {missing} are not in {self.class_id_map_file}",
                              "the map must list every class the model predicts")
        return [self.class_id_map[i] for i in ids]


@POSTPROCESS.register
class ScoreOutput:
    """The raw output rows rounded to ``decimal_places`` (PaddleClas ``ScoreOutput``, e.g. regression heads)."""

    def __init__(self, decimal_places: int):
        if isinstance(decimal_places, bool) or not isinstance(decimal_places, int) or decimal_places < 0:
            raise ConfigError("decimal_places", f"expected an integer >= 0, got {decimal_places!r}")
        self.decimal_places = decimal_places

    def __call__(self, x: Any, file_names: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
        rows = np.asarray(x["logits"] if isinstance(x, dict) else x, dtype=np.float64)
        check_names(file_names, len(rows), "ScoreOutput")
        return [with_file_name({"scores": np.around(row, self.decimal_places).tolist()}, file_names, i)
                for i, row in enumerate(rows)]
