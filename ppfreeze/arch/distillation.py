"""``DistillationModel``: several models side by side on the same input (PaddleClas's layout).

    Arch:
      name: DistillationModel
      freeze_params_list: [true, false]      # freeze the Teacher (through the Freeze plan)
      infer_model_name: Student              # the model tools/export_model.py writes
      models:
        - Teacher: {name: ResNet34, class_num: 12, pretrained: ./output/ResNet34/best_model}
        - Student: {name: ResNet18, class_num: 12}

State-dict keys are ``<model name>.<that model's key>`` (``Teacher.stem.0.conv.weight``), as in
PaddleClas, so its distillation checkpoints load by name. ``forward`` returns a
:class:`~ppfreeze.arch.outputs.ModelOutputs` ``{"Teacher": ..., "Student": ...}``.

``freeze_params_list`` does not touch ``stop_gradient`` here: each true entry becomes a rule of
the Freeze plan (``frozen_by_arch``, key ``Arch.freeze_params_list.<i>``, method ``auto``, BN
statistics fixed), so the frozen model is reported, audited and checkpointed like any frozen
part. A frozen teacher listed first is a gradient-free prefix: ``auto`` cuts it, so it runs
forward only. ``pretrained_list`` loads one weights file per model (``null`` entries skip).

Stages (for Freeze patterns) are each model's stages prefixed with its name (``Teacher.stem``
... ``Student.head``); ``branches`` lists the models, which run side by side rather than one
after the other (``Freeze.until: Student.stage2`` freezes the student's prefix only).
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence

import paddle
import paddle.nn as nn

from ..config.errors import ConfigError, did_you_mean
from .base import ArchModel
from .build import build_model
from .outputs import ModelOutputs
from .pretrained import load_pretrained
from .registry import MODELS

logger = logging.getLogger("ppfreeze")

KEY = "Arch"
DEFAULT_INFER_MODEL = "Student"


@MODELS.register
class DistillationModel(ArchModel):
    """Teacher(s) and student(s) built from ``models`` (see the module docstring).

    Args:
        models: ``[{Teacher: {name: ..., ...}}, {Student: {...}}]``: one single-key mapping per model.
        pretrained_list: one weights path (or null) per model, loaded into that model.
        freeze_params_list: one bool per model: true freezes that model through the Freeze plan.
        infer_model_name: the model that is deployed (exported, evaluated by plain metrics);
            default ``Student`` when there is one, else the last model.
        class_num: fallback ``class_num`` for models that do not set their own.
        is_rec: PaddleClas's retrieval flag; accepted and ignored (labels reach the models that
            need them, e.g. margin heads, without it).
    """

    def __init__(self, models: Optional[List[Dict[str, Any]]] = None, pretrained_list: Optional[List[Any]] = None,
                 freeze_params_list: Optional[List[bool]] = None, infer_model_name: Optional[str] = None,
                 class_num: Optional[int] = None, is_rec: Optional[bool] = None):
        super().__init__()
        names = _model_names(models)
        pretrained_list = _per_model(pretrained_list, names, "pretrained_list", None)
        freeze_params_list = _per_model(freeze_params_list, names, "freeze_params_list", False)
        for index, (name, cfg) in enumerate(zip(names, models)):
            self.add_sublayer(name, build_model(cfg[name], key=f"{KEY}.models.{index}.{name}", class_num=class_num))
        for index, (name, path) in enumerate(zip(names, pretrained_list)):
            if path is not None and path is not False:
                self._load_into(name, path, f"{KEY}.pretrained_list.{index}")
        self.branches: List[str] = names
        self.infer_model_name = _infer_model_name(infer_model_name, names)
        self.frozen_by_arch = self._frozen_by_arch(names, freeze_params_list)
        self.stages = self._stages()

    # -- construction ----------------------------------------------------------------------------
    def _load_into(self, name: str, path: Any, key: str) -> None:
        if not isinstance(path, str):
            raise ConfigError(key, f"expected a path to a .pdparams file or null, got {path!r}")
        model = self.model(name)
        report = load_pretrained(model, path, key)
        logger.info("%s (%s): %s", key, name, report.summary())
        if isinstance(model, ArchModel):
            model.mark_pretrained(set(model.pretrained_keys) | set(report.loaded))

    def _frozen_by_arch(self, names: List[str], freeze: List[bool]) -> Dict[str, List[str]]:
        rules: Dict[str, List[str]] = OrderedDict()
        for index, (name, frozen) in enumerate(zip(names, freeze)):
            if frozen:
                rules[f"{KEY}.freeze_params_list.{index}"] = [name]
            for key, patterns in getattr(self.model(name), "frozen_by_arch", {}).items():
                rules[key] = [f"{name}.{p}" for p in patterns]
        return rules

    def _stages(self) -> Dict[str, List[str]]:
        stages: Dict[str, List[str]] = OrderedDict()
        for name in self.branches:
            own = getattr(self.model(name), "stages", None) or {"head": [""]}
            for stage, units in own.items():
                stages[f"{name}.{stage}"] = [f"{name}.{u}" if u else name for u in units]
        return stages

    # -- the contract ----------------------------------------------------------------------------
    def model(self, name: str) -> nn.Layer:
        """The sub-model called ``name`` (``Teacher``, ``Student``...)."""
        return self._sub_layers[name]

    @property
    def infer_model(self) -> nn.Layer:
        """The deployed model (``infer_model_name``)."""
        return self.model(self.infer_model_name)

    @property
    def class_num(self) -> Optional[int]:
        """The deployed model's ``class_num``."""
        return getattr(self.infer_model, "class_num", None)

    @property
    def num_features(self) -> Optional[int]:
        """The deployed model's ``num_features``."""
        return getattr(self.infer_model, "num_features", None)

    @property
    def needs_label(self) -> bool:
        """True when any model needs the labels in training (margin heads)."""
        return any(getattr(self.model(n), "needs_label", False) for n in self.branches)

    @property
    def input_size(self) -> Optional[int]:
        """The fixed input size some model demands (None when none does)."""
        sizes = {getattr(self.model(n), "input_size", None) for n in self.branches} - {None}
        return max(sizes) if sizes else None

    @property
    def min_input_size(self) -> int:
        """The smallest input every model runs on."""
        return max(getattr(self.model(n), "min_input_size", 32) for n in self.branches)

    @property
    def pretrained_keys(self) -> frozenset:
        """Keys loaded from a weights file, in this model's key space (``Teacher.fc.weight``)."""
        keys = set(super().pretrained_keys)
        for name in self.branches:
            keys |= {f"{name}.{k}" for k in getattr(self.model(name), "pretrained_keys", ())}
        return frozenset(keys)

    def export_model(self) -> nn.Layer:
        """The deployed model's own deploy form: only ``infer_model_name`` is exported."""
        model = self.infer_model
        return model.export_model() if hasattr(model, "export_model") else model

    def forward(self, x: paddle.Tensor, label: Optional[paddle.Tensor] = None) -> ModelOutputs:
        out = ModelOutputs(primary=self.infer_model_name)
        for name in self.branches:
            model = self.model(name)
            takes_label = label is not None and getattr(model, "needs_label", False)
            out[name] = model(x, label) if takes_label else model(x)
        return out


def _model_names(models: Any) -> List[str]:
    key = f"{KEY}.models"
    if not isinstance(models, list) or not models:
        raise ConfigError(key, f"expected a non-empty list of single-key mappings, got {models!r}",
                          "e.g. models: [{Teacher: {name: ResNet34}}, {Student: {name: ResNet18}}]")
    names: List[str] = []
    for index, item in enumerate(models):
        if not isinstance(item, dict) or len(item) != 1 or not isinstance(next(iter(item.values())), dict):
            raise ConfigError(f"{key}.{index}", f"expected one mapping '<model name>: {{name: ..., ...}}', got {item!r}",
                              "e.g. - Teacher: {name: ResNet34, class_num: 1000}")
        name = next(iter(item))
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"{key}.{index}", f"model name {name!r} must be an identifier (it prefixes the state-dict keys)")
        if name in names:
            raise ConfigError(f"{key}.{index}", f"model name {name!r} is used twice", "give every model its own name")
        names.append(name)
    return names


def _per_model(values: Optional[Sequence[Any]], names: List[str], arg: str, default: Any) -> List[Any]:
    if values is None:
        return [default] * len(names)
    if not isinstance(values, list) or len(values) != len(names):
        raise ConfigError(f"{KEY}.{arg}", f"expected a list with one entry per model ({len(names)}: "
                                          f"{', '.join(names)}), got {values!r}")
    if arg == "freeze_params_list":
        for index, value in enumerate(values):
            if not isinstance(value, bool):
                raise ConfigError(f"{KEY}.{arg}.{index}", f"expected true or false, got {value!r}")
    return list(values)


def _infer_model_name(name: Optional[str], names: List[str]) -> str:
    if name is None:
        return DEFAULT_INFER_MODEL if DEFAULT_INFER_MODEL in names else names[-1]
    if name not in names:
        raise ConfigError(f"{KEY}.infer_model_name", f"{name!r} is not one of the models ({', '.join(names)})",
                          did_you_mean(str(name), names).strip() or None)
    return name
