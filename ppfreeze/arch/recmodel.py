"""``RecModel``: backbone -> neck (embedding) -> head, the PaddleClas retrieval architecture.

State dict keys are ``backbone.*``, ``neck.*`` and ``head.*`` as in PaddleClas, so its
recognition checkpoints load by name. ``forward(x, label=None)`` returns a dict:

    backbone   the (cut) backbone's output
    neck       the neck's output (only with a neck)
    features   the embedding: the neck's output, or the backbone's without a neck
    logits     the head's output (only with a head)

Stages (for ``Freeze.until`` / ``Freeze.stages``): the backbone's stages, prefixed with
``backbone.``; then ``neck`` = the backbone's own post-trunk layers (pooling, ``last_conv``,
...) plus the neck; then ``head``. So ``Freeze.until: stage3`` works as on the bare backbone.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, List, Optional

import paddle


from ..config.errors import ConfigError
from .build import build_model
from .base import ArchModel
from .gears import GEARS
from .registry import MODELS
from .utils import stop_after

BACKBONE_HEAD_STAGE = "head"


@MODELS.register
class RecModel(ArchModel):
    """A retrieval / recognition model built from ``Arch.Backbone``, ``BackboneStopLayer``,
    ``Neck`` and ``Head`` sections.

    Args:
        Backbone: ``{name: PPLCNet_x2_5, pretrained: path, ...}`` built with ``build_model``.
        BackboneStopLayer: ``{name: flatten}``: layers after it become ``Identity``.
        Neck: a gear such as ``{name: FC, embedding_size: 1280, class_num: 512}``.
        Head: a gear such as ``{name: ArcMargin, embedding_size: 512, class_num: 1000}``.
        head_feature_from: what the head reads: ``neck`` (the features, default) or ``backbone``
            (PaddleClas's option; the features stay the neck's output).
        is_rec: PaddleClas's flag for calling the model with the labels; here the head decides
            (margin heads take them), so it is accepted and has no effect.
    """

    def __init__(self, Backbone: Dict[str, Any], BackboneStopLayer: Optional[Dict[str, Any]] = None,
                 Neck: Optional[Dict[str, Any]] = None, Head: Optional[Dict[str, Any]] = None,
                 head_feature_from: str = "neck", is_rec: bool = True):
        super().__init__()
        if head_feature_from not in ("neck", "backbone"):
            raise ConfigError("head_feature_from", f"expected neck or backbone, got {head_feature_from!r}")
        if not isinstance(is_rec, bool):
            raise ConfigError("is_rec", f"expected true or false, got {is_rec!r}")
        self.head_feature_from = head_feature_from
        self.backbone = build_model(Backbone, key="Arch.Backbone")
        self.cut = BackboneStopLayer is not None
        if BackboneStopLayer is not None:
            stop_after(self.backbone, _stop_layer_name(BackboneStopLayer), key="Arch.BackboneStopLayer.name")
        self.neck = GEARS.build(Neck, "Arch.Neck") if Neck is not None else None
        self.head = GEARS.build(Head, "Arch.Head") if Head is not None else None
        self.stages = self._stages()

    @property
    def pretrained_keys(self) -> frozenset:
        """Keys loaded through ``Arch.pretrained`` or ``Arch.Backbone.pretrained``, in this model's key space."""
        return super().pretrained_keys | {f"backbone.{k}" for k in self.backbone.pretrained_keys}

    @property
    def needs_label(self) -> bool:
        """True when the head applies a label-dependent margin in training."""
        return bool(getattr(self.head, "needs_label", False))

    @property
    def class_num(self):
        """The head's width (None without a head)."""
        return getattr(self.head, "class_num", None) if self.head is not None else None

    @property
    def num_features(self) -> int:
        """Width of ``features`` (the embedding)."""
        if self.neck is not None:
            width = getattr(self.neck, "class_num", None) or getattr(self.neck, "num_features", None)
            if width:
                return int(width)
        return self._backbone_width()   # no neck, or one that keeps the width (Tanh)

    def _backbone_width(self) -> int:
        """Width of the backbone's output: its classifier's when no stop layer cut it off."""
        classifier = getattr(self.backbone, "class_num", None)
        if not self.cut and classifier:
            return int(classifier)
        return int(self.backbone.num_features)

    def forward(self, x: paddle.Tensor, label: Optional[paddle.Tensor] = None) -> Dict[str, paddle.Tensor]:
        out = {"backbone": self.backbone(x)}
        features = out["backbone"]
        if self.neck is not None:
            features = out["neck"] = self.neck(features)
        out["features"] = features
        if self.head is not None:
            head_input = out["backbone"] if self.head_feature_from == "backbone" else features
            out["logits"] = self.head(head_input, label) if self.needs_label else self.head(head_input)
        return out

    def _stages(self) -> Dict[str, List[str]]:
        backbone_stages = self.backbone.stages
        stages: Dict[str, List[str]] = OrderedDict()
        for name, units in backbone_stages.items():
            if name != BACKBONE_HEAD_STAGE:
                stages[name] = [_prefixed("backbone", u) for u in units]
        neck = [_prefixed("backbone", u) for u in backbone_stages.get(BACKBONE_HEAD_STAGE, [])]
        neck += ["neck"] if self.neck is not None else []
        if neck:
            stages["neck"] = neck
        if self.head is not None:
            stages["head"] = ["head"]
        return stages


def _prefixed(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if name else prefix


def _stop_layer_name(cfg: Any) -> str:
    name = cfg.get("name") if isinstance(cfg, dict) else None
    if not isinstance(name, str) or not name:
        raise ConfigError("Arch.BackboneStopLayer", f"expected {{name: <sublayer>}}, got {cfg!r}",
                          "e.g. BackboneStopLayer: {name: flatten}")
    return name
