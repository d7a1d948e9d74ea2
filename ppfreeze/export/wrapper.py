"""The layer that gets exported: the model, one named output, optionally a softmax or a sigmoid."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..config.errors import ConfigError, did_you_mean
DEFAULT_OUTPUT_KEY = "logits"
# models whose exported output is not the logits by default (PaddleClas: infer_output_key: features)
DEFAULT_OUTPUT_KEYS = {"RecModel": "features"}


@dataclass
class OutputOptions:
    """``Arch.infer_output_key`` (which entry of a dict output) and ``Arch.infer_add_softmax``;
    ``add_sigmoid`` for multi-label / attribute models (then no softmax)."""
    output_key: str = DEFAULT_OUTPUT_KEY
    add_softmax: bool = True
    add_sigmoid: bool = False


def split_export_keys(arch_cfg: Dict[str, Any], multilabel: bool = False) -> Tuple[Dict[str, Any], OutputOptions]:
    """Return (a copy of ``arch_cfg`` without the export keys, the options they give).

    ``infer_add_softmax`` defaults to true, as in PaddleClas, except for embedding outputs
    (``infer_output_key: features``): a softmax over features is never wanted. A
    ``multilabel`` model (PaddleClas: ``Global.use_multilabel`` or ATTRMetric first in
    ``Metric.Eval``) ends in a sigmoid instead, whatever ``infer_add_softmax`` says.
    """
    arch = copy.deepcopy(arch_cfg)
    key = arch.pop("infer_output_key", None) or DEFAULT_OUTPUT_KEYS.get(arch.get("name"), DEFAULT_OUTPUT_KEY)
    if not isinstance(key, str):
        raise ConfigError("Arch.infer_output_key", f"expected a string such as logits or features, got {key!r}")
    softmax = arch.pop("infer_add_softmax", key != "features")
    if not isinstance(softmax, bool):
        raise ConfigError("Arch.infer_add_softmax", f"expected true or false, got {softmax!r}")
    return arch, OutputOptions(key, softmax and not multilabel, bool(multilabel))


def is_multilabel(config: Dict[str, Any]) -> bool:
    """PaddleClas's rule for a sigmoid output: ``Global.use_multilabel`` or ATTRMetric first in ``Metric.Eval``."""
    first = ((config.get("Metric") or {}).get("Eval") or [None])[0]
    first_name = (first.get("name") or next(iter(first), None)) if isinstance(first, dict) else None
    return bool((config.get("Global") or {}).get("use_multilabel")) or first_name == "ATTRMetric"


class InferenceModel(nn.Layer):
    """``model(x)`` -> the selected output (-> softmax); what ``paddle.jit.save`` traces."""

    def __init__(self, model: nn.Layer, options: OutputOptions):
        super().__init__()
        self.model = model
        self.output_key = options.output_key
        self.add_softmax = options.add_softmax
        self.add_sigmoid = options.add_sigmoid

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = self.model(x)
        if isinstance(out, dict):
            out = out[self.output_key]
        elif isinstance(out, (list, tuple)):  # PaddleClas models may return [logits, ...]
            out = out[0]
        if self.add_sigmoid:
            return F.sigmoid(out)
        return F.softmax(out, axis=-1) if self.add_softmax else out


def check_output_key(model: nn.Layer, options: OutputOptions, image_shape: Sequence[int]) -> Optional[list]:
    """Run one zero image; a dict output without ``output_key`` is a ConfigError naming the keys.

    Returns the dict's keys (None for a tensor output), for the metadata.
    """
    model.eval()
    with paddle.no_grad():
        out = model(paddle.zeros([1, *image_shape], dtype="float32"))
    if not isinstance(out, dict):
        return None
    if options.output_key not in out:
        raise ConfigError("Arch.infer_output_key", f"the model returns a dict with keys {sorted(out)}, "
                                                   f"not '{options.output_key}'",
                          f"set Arch.infer_output_key to one of them (features for retrieval)."
                          f"{did_you_mean(options.output_key, out)}")
    return sorted(out)
