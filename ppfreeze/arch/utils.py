"""Model surgery and stage metadata helpers (no parameter is ever renamed).

Forward order is the registration order of sublayers: every model in ``ppfreeze.arch``
registers its children in the order ``forward`` runs them.
"""
from __future__ import annotations

from typing import List

import paddle.nn as nn

from ..config.errors import ConfigError, did_you_mean


def sublayer_names_in_order(model: nn.Layer) -> List[str]:
    """Dotted names of all sublayers (``stem``, ``stem.0``, ``stem.0.conv``, ...), depth first."""
    return [name for name, _ in model.named_sublayers()]


def stop_after(model: nn.Layer, layer_name: str, key: str = "Arch.BackboneStopLayer.name") -> None:
    """Make ``layer_name`` the model's last computation: every sublayer that runs after it
    (later siblings of it and of each of its ancestors) becomes ``nn.Identity``."""
    names = sublayer_names_in_order(model)
    if layer_name not in names:
        raise ConfigError(key, f"model {type(model).__name__} has no sublayer '{layer_name}'",
                          f"top-level sublayers: {', '.join(n for n, _ in model.named_children())}."
                          f"{did_you_mean(layer_name, names)}")
    parent = model
    for child in layer_name.split("."):
        _replace_children_after(parent, child)
        # _sub_layers, not getattr: a model may shadow a sublayer name (PP-HGNet's ``stages``
        # sublayer vs the contract's ``stages`` mapping)
        parent = parent._sub_layers[child]


def _replace_children_after(parent: nn.Layer, child: str) -> None:
    children = [n for n, _ in parent.named_children()]
    for later in children[children.index(child) + 1:]:
        # into _sub_layers directly: setattr would also drop an instance attribute of that name
        # (the ``stages`` mapping of models with a ``stages`` sublayer)
        parent._sub_layers[later] = nn.Identity()
