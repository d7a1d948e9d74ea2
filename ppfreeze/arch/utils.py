"""Model surgery and stage metadata helpers (no parameter is ever renamed).

Forward order is the registration order of sublayers: every model in ``ppfreeze.arch``
registers its children in the order ``forward`` runs them.
"""
from __future__ import annotations

import logging
import re
from typing import List

import paddle.nn as nn

from ..config.errors import did_you_mean

logger = logging.getLogger("ppfreeze")


def sublayer_names_in_order(model: nn.Layer) -> List[str]:
    """Dotted names of all sublayers (``stem``, ``stem.0``, ``stem.0.conv``, ...), depth first."""
    return [name for name, _ in model.named_sublayers()]


def stop_after(model: nn.Layer, layer_name: str, key: str = "Arch.BackboneStopLayer.name") -> bool:
    """Make ``layer_name`` the model's last computation: every sublayer that runs after it
    (later siblings of it and of each of its ancestors) becomes ``nn.Identity``.

    ``layer_name`` is dotted (``blocks.5``) or PaddleClas's pattern (``blocks[5]``). A name the
    model does not have leaves it whole, with a warning, as PaddleClas does (its CLIP retrieval
    configs name ``flatten``, which the CLIP ViT has not: its ``return_embed`` output is used
    whole). Returns whether the model was cut.
    """
    layer_name = re.sub(r"\[(\d+)\]", r".\1", layer_name)
    names = sublayer_names_in_order(model)
    if layer_name not in names:
        logger.warning("%s: model %s has no sublayer '%s', so the whole model is used (as PaddleClas does). "
                       "Top-level sublayers: %s.%s", key, type(model).__name__, layer_name,
                       ", ".join(n for n, _ in model.named_children()), did_you_mean(layer_name, names))
        return False
    parent = model
    for child in layer_name.split("."):
        _replace_children_after(parent, child)
        # _sub_layers, not getattr: a model may shadow a sublayer name (PP-HGNet's ``stages``
        # sublayer vs the contract's ``stages`` mapping)
        parent = parent._sub_layers[child]
    return True


def _replace_children_after(parent: nn.Layer, child: str) -> None:
    children = [n for n, _ in parent.named_children()]
    for later in children[children.index(child) + 1:]:
        # into _sub_layers directly: setattr would also drop an instance attribute of that name
        # (the ``stages`` mapping of models with a ``stages`` sublayer)
        parent._sub_layers[later] = nn.Identity()
