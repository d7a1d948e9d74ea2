"""Save or load the weights of one named sublayer (e.g. ``fc``) as its own ``.pdparams`` file.

The file holds the sublayer's own ``state_dict`` (names relative to it: ``weight``, ``bias``),
so it loads into the same sublayer of any model that has one of that shape.
"""
from __future__ import annotations

from typing import List

import paddle.nn as nn

from ..arch.pretrained import LoadReport, load_pretrained
from ..config.errors import ConfigError, did_you_mean
from ..utils.io import atomic_paddle_save


def find_sublayer(model: nn.Layer, name: str, key: str = "--layer") -> nn.Layer:
    """The sublayer called ``name`` (dotted, e.g. ``blocks.3``); unknown names get a did-you-mean."""
    layers = dict(model.named_sublayers())
    if name not in layers:
        top = ", ".join(n for n, _ in model.named_children())
        raise ConfigError(key, f"model {type(model).__name__} has no sublayer '{name}'",
                          f"top-level sublayers: {top}.{did_you_mean(name, layers)}")
    return layers[name]


def save_sublayer_weights(model: nn.Layer, layer_name: str, output: str) -> List[str]:
    """Write ``layer_name``'s state_dict to ``output`` (atomically); returns the tensor names."""
    state = find_sublayer(model, layer_name).state_dict()
    if not state:
        raise ConfigError("--layer", f"sublayer '{layer_name}' has no parameters or buffers to save")
    atomic_paddle_save(state, output)
    return list(state)


def load_sublayer_weights(model: nn.Layer, layer_name: str, path: str, key: str = "--load") -> LoadReport:
    """Load a file written by :func:`save_sublayer_weights` into ``layer_name``; it must fit exactly."""
    report = load_pretrained(find_sublayer(model, layer_name), path, key)
    if report.missing or report.mismatched or report.unexpected:
        raise ConfigError(key, f"{path} does not fit sublayer '{layer_name}': {report.summary()}",
                          "save it from a model with the same layer shape (e.g. the same class_num)")
    return report
