"""``build_model``: the ``Arch`` section (or ``Arch.Backbone``) -> a model from ``MODELS``."""
from __future__ import annotations

import inspect
import logging
from typing import Any, Dict, Optional

import paddle.nn as nn

from ..config.errors import ConfigError
from ..utils.builder import split_component
from .pretrained import ALL_BUT_HEAD, LoadReport, coverage_shortfall, load_pretrained
from .registry import MODELS

logger = logging.getLogger("ppfreeze")
# PaddleClas Arch keys that shape the exported inference model only
EXPORT_ONLY_KEYS = ("infer_output_key", "infer_add_softmax")


def build_model(arch_cfg: Dict[str, Any], key: str = "Arch", class_num: Optional[int] = None,
                ml_decoder: Optional[Dict[str, Any]] = None) -> nn.Layer:
    """Build the model an ``Arch``-style mapping describes and load its ``pretrained`` weights.

    Args:
        arch_cfg: ``{name: ResNet50, class_num: 10, pretrained: path, ...}`` (or ``{ResNet50: {...}}``).
        key: config path of ``arch_cfg``, used in error messages (``Arch.Backbone`` when nested).
        class_num: the engine's fallback (``Global.class_num``); ``arch_cfg['class_num']`` wins,
            and it is only passed to models that take a ``class_num``.
        ml_decoder: the config's top-level ``MLDecoder`` section, used with ``use_ml_decoder: true``
            (PaddleClas's keys): the classifier is replaced by an ML-Decoder head
            (:func:`ppfreeze.arch.gears.ml_decoder.attach_ml_decoder`), before ``pretrained`` loads.
    """
    name, kwargs = split_component(arch_cfg, key)
    pretrained = kwargs.pop("pretrained", False)
    use_ml_decoder = kwargs.pop("use_ml_decoder", False) if key == "Arch" else False
    if not isinstance(use_ml_decoder, bool):
        raise ConfigError(f"{key}.use_ml_decoder", f"expected true or false, got {use_ml_decoder!r}")
    if ml_decoder is not None and not use_ml_decoder:
        logger.warning("MLDecoder: the section is ignored without %s.use_ml_decoder: true (as in PaddleClas)", key)
    for export_key in EXPORT_ONLY_KEYS:  # read by tools/export_model.py, not by the model
        kwargs.pop(export_key, None)
    # use_ssld only picks which file PaddleClas would download; sync BN has no CPU meaning
    for ignored in ("use_ssld", "use_sync_bn"):
        if kwargs.pop(ignored, False):
            logger.warning("%s.%s is ignored by ppfreeze", key, ignored)
    factory = MODELS.get(name, f"{key}.name")
    if class_num is not None and "class_num" not in kwargs and _accepts(factory, "class_num"):
        kwargs["class_num"] = class_num
    model = MODELS.build({"name": name, **kwargs}, key)
    if use_ml_decoder:
        from .gears.ml_decoder import attach_ml_decoder
        attach_ml_decoder(model, ml_decoder)
    _load_arch_pretrained(model, pretrained, f"{key}.pretrained")
    return model


def _accepts(factory: Any, arg: str) -> bool:
    params = inspect.signature(factory).parameters
    return arg in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def _load_arch_pretrained(model: nn.Layer, pretrained: Any, key: str) -> Optional[LoadReport]:
    """PaddleClas's ``Arch.pretrained``: False/None -> nothing; a local path -> load it."""
    if pretrained is None or pretrained is False:
        return None
    if pretrained is True or (isinstance(pretrained, str) and pretrained.startswith(("http://", "https://"))):
        raise ConfigError(key, f"{pretrained!r} asks for a download, and ppfreeze downloads nothing",
                          "download the .pdparams file yourself and give its local path, "
                          "e.g. pretrained: ./pretrained/ResNet50_pretrained")
    if not isinstance(pretrained, str):
        raise ConfigError(key, f"expected false or a path to a .pdparams file, got {pretrained!r}")
    report = load_pretrained(model, pretrained, key)
    logger.info("%s: %s", key, report.summary())
    problem = coverage_shortfall(model, report, ALL_BUT_HEAD)
    if problem:  # an initialisation, not the weights being evaluated: warn (training decides)
        logger.warning("WEIGHTS DO NOT FIT THE MODEL: %s: %s. Are they for another architecture?", key, problem)
    model.mark_pretrained(report.loaded)  # read by the Freeze pretrained guard
    return report
