"""Attribute post-processing for PaddleClas's PULC attribute models (pure numpy).

Each class reads the sigmoid probabilities of a fixed attribute layout (PA-100k's 26 person
attributes, 19 vehicle colours / types, 6 table properties) and returns per image
``{"attributes": ..., "output": [0/1 per attribute], "file_name": ...}`` (``file_name``
when file names are given). Thresholds compare with ``>`` except where PaddleClas uses
``>=`` (the vehicle colour / type names).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..config.errors import ConfigError
from .postprocess import check_from_logits, check_names, scores_2d, sigmoid_probs, with_file_name
from .registry import POSTPROCESS


def _threshold(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(key, f"expected a number, got {value!r}")
    return float(value)


def _probabilities(x: Any, who: str, width: int, from_logits: Optional[bool],
                   file_names: Optional[Sequence[str]]) -> np.ndarray:
    probs = sigmoid_probs(scores_2d(x, who), from_logits)
    if probs.shape[1] != width:
        raise ValueError(f"{who} expects {width} attribute scores per image, got {probs.shape[1]}")
    check_names(file_names, len(probs), who)
    return probs


PERSON_AGES = ("AgeLess18", "Age18-60", "AgeOver60")
PERSON_DIRECTIONS = ("Front", "Side", "Back")
PERSON_BAGS = ("HandBag", "ShoulderBag", "Backpack")
PERSON_UPPER = ("UpperStride", "UpperLogo", "UpperPlaid", "UpperSplice")
PERSON_LOWER = ("LowerStripe", "LowerPattern", "LongCoat", "Trousers", "Shorts", "Skirt&Dress")


@POSTPROCESS.register
class PersonAttribute:
    """PA-100k's 26 person attributes as readable labels (PaddleClas ``PersonAttribute``).

    Layout: 0 hat, 1 glasses, 2-3 short / long sleeve, 4-7 upper patterns, 8-13 lower wear,
    14 boots, 15-17 bags, 18 holding objects, 19-21 age, 22 female, 23-25 direction.

    Args:
        threshold: threshold of every attribute but glasses and holding objects.
        glasses_threshold: threshold of attribute 1 (glasses).
        hold_threshold: threshold of attribute 18 (holding objects in front).
        from_logits: true / false / null (detect), as for MultiLabelThreshOutput.
    """

    def __init__(self, threshold: float = 0.5, glasses_threshold: float = 0.3, hold_threshold: float = 0.6,
                 from_logits: Optional[bool] = None):
        self.threshold = _threshold(threshold, "threshold")
        self.glasses_threshold = _threshold(glasses_threshold, "glasses_threshold")
        self.hold_threshold = _threshold(hold_threshold, "hold_threshold")
        self.from_logits = check_from_logits(from_logits)

    def __call__(self, x: Any, file_names: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
        probs = _probabilities(x, "PersonAttribute", 26, self.from_logits, file_names)
        # PaddleClas: the 0/1 output uses 0.5 for every attribute except glasses and holding
        thresholds = np.full(26, 0.5)
        thresholds[1], thresholds[18] = self.glasses_threshold, self.hold_threshold
        return [with_file_name({"attributes": self._labels(p), "output": (p > thresholds).astype(int).tolist()},
                               file_names, i) for i, p in enumerate(probs)]

    def _labels(self, p: np.ndarray) -> List[str]:
        t = self.threshold
        bag = int(np.argmax(p[15:18]))
        upper = "Upper: " + ("LongSleeve" if p[3] > p[2] else "ShortSleeve")
        upper += "".join(f" {name}" for name, v in zip(PERSON_UPPER, p[4:8]) if v > t)
        lower_worn = [name for name, v in zip(PERSON_LOWER, p[8:14]) if v > t]
        lower = "Lower:  " + " ".join(lower_worn or [PERSON_LOWER[int(np.argmax(p[8:14]))]])
        return [
            "Female" if p[22] > t else "Male",
            PERSON_AGES[int(np.argmax(p[19:22]))],
            PERSON_DIRECTIONS[int(np.argmax(p[23:]))],
            f"Glasses: {p[1] > self.glasses_threshold}",
            f"Hat: {p[0] > t}",
            f"HoldObjectsInFront: {p[18] > self.hold_threshold}",
            PERSON_BAGS[bag] if p[15 + bag] > t else "No bag",
            upper,
            lower,
            "Boots" if p[14] > t else "No boots",
        ]


VEHICLE_COLORS = ("yellow", "orange", "green", "gray", "red", "blue", "white", "golden", "brown", "black")
VEHICLE_TYPES = ("sedan", "suv", "van", "hatchback", "mpv", "pickup", "bus", "truck", "estate")


@POSTPROCESS.register
class VehicleAttribute:
    """10 colours + 9 types of the PULC vehicle-attribute model (PaddleClas ``VehicleAttribute``).

    ``attributes`` is one string, e.g. ``"Color: (red, prob: 0.93), Type: (suv, prob: 0.88)"``
    ("Color unknown" / "Type unknown" below the threshold). PaddleClas's training-side class
    names the keys ``attr`` / ``pred``; we use its deploy-side names ``attributes`` / ``output``.

    Args:
        color_threshold, type_threshold: thresholds of the colour and type groups.
        from_logits: true / false / null (detect), as for MultiLabelThreshOutput.
    """

    def __init__(self, color_threshold: float = 0.5, type_threshold: float = 0.5,
                 from_logits: Optional[bool] = None):
        self.color_threshold = _threshold(color_threshold, "color_threshold")
        self.type_threshold = _threshold(type_threshold, "type_threshold")
        self.from_logits = check_from_logits(from_logits)

    def __call__(self, x: Any, file_names: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
        probs = _probabilities(x, "VehicleAttribute", 19, self.from_logits, file_names)
        thresholds = np.array([self.color_threshold] * 10 + [self.type_threshold] * 9)
        return [with_file_name({"attributes": self._label(p), "output": (p > thresholds).astype(int).tolist()},
                               file_names, i) for i, p in enumerate(probs)]

    def _label(self, p: np.ndarray) -> str:
        color, kind = int(np.argmax(p[:10])), int(np.argmax(p[10:]))
        color_info = (f"Color: ({VEHICLE_COLORS[color]}, prob: {float(p[color])})"
                      if p[color] >= self.color_threshold else "Color unknown")
        type_info = (f"Type: ({VEHICLE_TYPES[kind]}, prob: {float(p[10 + kind])})"
                     if p[10 + kind] >= self.type_threshold else "Type unknown")
        return f"{color_info}, {type_info}"


# (threshold argument, label above it, label at or below it) per output of the table model
TABLE_ATTRIBUTES = (("source_threshold", "Scanned", "Photo"), ("number_threshold", "Little", "Numerous"),
                    ("color_threshold", "Black-and-White", "Multicolor"), ("clarity_threshold", "Clear", "Blurry"),
                    ("obstruction_threshold", "Without-Obstacles", "With-Obstacles"),
                    ("angle_threshold", "Horizontal", "Tilted"))


@POSTPROCESS.register
class TableAttribute:
    """6 table-image properties (PaddleClas ``TableAttribute``): source, number, colour, clarity,
    obstruction, angle.

    Each label uses its own threshold (PaddleClas names obstruction and angle by
    ``number_threshold``, a slip that only matters when the thresholds differ).

    Args:
        source_threshold, number_threshold, color_threshold, clarity_threshold,
        obstruction_threshold, angle_threshold: per-property thresholds.
        from_logits: true / false / null (detect), as for MultiLabelThreshOutput.
    """

    def __init__(self, source_threshold: float = 0.5, number_threshold: float = 0.5, color_threshold: float = 0.5,
                 clarity_threshold: float = 0.5, obstruction_threshold: float = 0.5, angle_threshold: float = 0.5,
                 from_logits: Optional[bool] = None):
        given = dict(source_threshold=source_threshold, number_threshold=number_threshold,
                     color_threshold=color_threshold, clarity_threshold=clarity_threshold,
                     obstruction_threshold=obstruction_threshold, angle_threshold=angle_threshold)
        self.thresholds = np.array([_threshold(given[key], key) for key, _, _ in TABLE_ATTRIBUTES])
        self.from_logits = check_from_logits(from_logits)

    def __call__(self, x: Any, file_names: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
        probs = _probabilities(x, "TableAttribute", 6, self.from_logits, file_names)
        results = []
        for i, p in enumerate(probs):
            above = p > self.thresholds
            labels = [high if hit else low for hit, (_, high, low) in zip(above, TABLE_ATTRIBUTES)]
            results.append(with_file_name({"attributes": labels, "output": above.astype(int).tolist()},
                                          file_names, i))
        return results
