"""The model contract: what every model registered in ``MODELS`` provides.

The Freeze plan, the engine, the exporter and RecModel read these attributes; nothing else
about a model is assumed. See docs/contributing.md for how to add a backbone.

``stages``
    Ordered mapping ``stage name -> [unit, ...]`` in forward order. A unit is the dotted name
    of a sublayer (``blocks.3``) or of a root parameter (``cls_token``); units are listed in
    the order ``forward`` runs them, and every ``state_dict`` key lies under exactly one unit.
    The first stage is ``stem``, the last ``head`` (the classifier and whatever runs after the
    trunk); the ones between are ``stage1``, ``stage2``, ... (or the family's own names, such
    as PP-LCNet's ``blocks2``). ``Freeze.until`` / ``stages`` / ``cut`` and the FLOPs report work
    on any model that declares them truthfully. No key is renamed to make stages.
``class_num``
    Width of the classifier output (``None`` for a headless feature extractor).
``num_features``
    Width of the features the classifier reads (what a retrieval neck receives after
    ``BackboneStopLayer: flatten`` or the equivalent).
``needs_label``
    True when ``forward(x, label)`` needs the labels in training (margin heads).
``pretrained_keys``
    State-dict keys loaded from ``Arch.pretrained`` (read-only; ``build_model`` records them
    with :meth:`ArchModel.mark_pretrained`); the Freeze pretrained guard reads it.
``input_size`` / ``min_input_size``
    ``input_size``: the only resolution the model accepts (fixed position embeddings or window
    partitions: ViT, Swin), else None; ``min_input_size``: the smallest square input it runs on.
``adapt_state_dict(state)`` (optional)
    Maps a weights file's keys onto this model before loading (ResNet50_metabin reads a plain
    ResNet50 file, as in PaddleClas); absent on most models.
``branches`` (optional)
    Names of top-level sub-models that run side by side on the same input instead of one
    after the other (``DistillationModel``: ``["Teacher", "Student"]``). Each one's stages are
    prefixed with its name (``Teacher.stem`` .. ``Teacher.head``, ``Student.stem`` ..).
``frozen_by_arch`` (optional)
    ``{config key: [pattern, ...]}``: parts the ``Arch`` section itself asks to freeze
    (PaddleClas's ``freeze_params_list``); the Freeze plan turns each into a rule under that key.
``export_model()``
    The layer to export. By default a copy in which every sublayer that has a ``fused()`` method
    (a multi-branch training block: RepVGG, PP-LCNetV2) is replaced by the single-branch layer it
    returns (:func:`reparameterized_copy`), or ``self`` when there is none; the outputs are the
    same. Wrappers inherit this, so a RecModel with a RepVGG backbone exports fused too.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence

import paddle
import paddle.nn as nn


class ArchModel(nn.Layer):
    """Base class of every model in ``MODELS`` (see the module docstring for the contract)."""

    #: stage name -> units, in forward order; set by the subclass (usually in ``__init__``)
    stages: Mapping[str, Sequence[str]] = OrderedDict()
    class_num: Optional[int] = None
    num_features: Optional[int] = None
    needs_label: bool = False
    input_size: Optional[int] = None
    min_input_size: int = 32

    def __init__(self) -> None:
        super().__init__()
        self._pretrained_keys: FrozenSet[str] = frozenset()

    @property
    def pretrained_keys(self) -> FrozenSet[str]:
        """State-dict keys that came from ``Arch.pretrained`` (empty when nothing was loaded)."""
        return getattr(self, "_pretrained_keys", frozenset())

    def mark_pretrained(self, keys: Iterable[str]) -> None:
        """Record the keys ``build_model`` loaded from ``Arch.pretrained``."""
        self._pretrained_keys = frozenset(keys)

    def export_model(self) -> nn.Layer:
        """The layer ``tools/export_model.py`` saves (the deploy form of this model)."""
        if any(hasattr(layer, "fused") for layer in self.sublayers()):
            return reparameterized_copy(self)
        return self


def reparameterized_copy(model: nn.Layer) -> nn.Layer:
    """A deep copy of ``model`` in eval mode in which every sublayer that has a ``fused()``
    method (a multi-branch training block) is replaced by the single-branch layer it returns.
    ``model`` itself is left untouched, so training can go on after an export."""
    deploy = copy.deepcopy(model)
    deploy.eval()
    with paddle.no_grad():
        _replace_fusable(deploy)
    return deploy


def _replace_fusable(layer: nn.Layer) -> None:
    for name, child in list(layer._sub_layers.items()):
        if child is None:
            continue
        if hasattr(child, "fused"):
            fused = child.fused()
            fused.eval()
            layer._sub_layers[name] = fused
        else:
            _replace_fusable(child)


def model_attr(model: nn.Layer, name: str, default=None):
    """Read a contract attribute from a model, looking through a ``paddle.DataParallel`` wrapper."""
    inner = getattr(model, "_layers", model)
    return getattr(inner, name, default)


def contract_violations(model: nn.Layer) -> List[str]:
    """Everything ``model`` gets wrong about the contract (empty list: it complies).

    Checked: it is an :class:`ArchModel`; ``stages`` is non-empty, starts with ``stem`` and ends
    with ``head``; every unit names a real sublayer or root parameter; units held by the same
    container appear in its registration order (across containers registration says nothing
    about forward order: ConvNeXt registers all downsampling layers before all stages); every
    state-dict key lies under exactly one unit; ``class_num`` and ``num_features`` are positive
    integers (``class_num`` may be None).
    """
    problems: List[str] = []
    if not isinstance(model, ArchModel):
        problems.append(f"{type(model).__name__} does not derive from ppfreeze.arch.base.ArchModel")
    stages: Dict[str, List[str]] = OrderedDict((k, list(v)) for k, v in (getattr(model, "stages", None) or {}).items())
    if not stages:
        return problems + ["declares no stages"]
    for prefix in [f"{b}." for b in getattr(model, "branches", None) or []] or [""]:
        names = [n[len(prefix):] for n in stages if n.startswith(prefix)]
        if not names or names[0] != "stem" or names[-1] != "head":
            problems.append(f"stages must run from '{prefix}stem' to '{prefix}head', got {[prefix + n for n in names]}")
    layers = [n for n, _ in model.named_sublayers()]
    params = [n for n, _ in model.named_parameters()]
    order = {n: i for i, n in enumerate(layers)}
    units = [u for us in stages.values() for u in us]
    for unit in units:
        if unit not in order and unit not in params:
            problems.append(f"stage unit '{unit}' is not a sublayer or parameter")
    by_parent: Dict[str, List[str]] = OrderedDict()
    for unit in units:
        if unit in order:
            by_parent.setdefault(unit.rpartition(".")[0], []).append(unit)
    for parent, siblings in by_parent.items():
        if [order[u] for u in siblings] != sorted(order[u] for u in siblings):
            problems.append(f"stage units in '{parent or '<model>'}' are not in its registration (forward) order: "
                            + ", ".join(siblings))
    for key in model.state_dict():
        owners = [u for u in units if key == u or key.startswith(u + ".")]
        if len(owners) != 1:
            problems.append(f"state-dict key '{key}' lies under {len(owners)} units {owners} (expected exactly 1)")
    for attr, optional in (("class_num", True), ("num_features", False)):
        value = getattr(model, attr, None)
        if value is None and optional:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append(f"{attr} must be a positive integer, got {value!r}")
    return problems
