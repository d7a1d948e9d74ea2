"""``inference.yml``: what deploy needs to run an exported model exactly as it was evaluated.

Written by the exporter next to ``inference.json``; read by ``deploy/python``. Pure Python
(yaml + the numpy preprocess ops), so deploy reads it without the training stack.

Sections::

    Global:      model_name, image_shape, input_name, output_key, softmax, sigmoid, format, model_file, ...
    PreProcess:  {transform_ops: [...]}   # the config's Infer.transforms (the eval preprocessing)
    PostProcess: {name: Topk, topk: 5, class_id_map_file: <file copied next to the model>} or null
    LabelMap:    {0: name, ...} or null
    Weights:     where the weights came from and what did not load
    Freeze:      the Freeze plan summary and the frozen-tensor audit (only with a Freeze section)
"""
from __future__ import annotations

import copy
import logging
import os
from typing import Any, Dict, List, Optional, Tuple

import yaml

from ..config.errors import ConfigError
from ..config.loader import get_by_path, yaml_load
from ..utils.builder import split_component
from ..utils.io import atomic_write_text

INFERENCE_YML = "inference.yml"
PREPROCESS_KEYS = ("Infer.transforms", "DataLoader.Eval.dataset.transform_ops")

logger = logging.getLogger("ppfreeze")


def export_preprocess(config: Dict[str, Any]) -> Tuple[List[Any], str]:
    """The preprocess ops deploy must run, and the config key they came from.

    ``Infer.transforms`` first (PaddleClas's export does the same), else the eval ops. HWC
    output gets a trailing ``ToCHWImage``, as the training dataset transposes HWC to CHW.
    """
    from ..data.preprocess import create_operators, outputs_channel_first  # validates every op now
    for key in PREPROCESS_KEYS:
        ops = get_by_path(config, key)
        if ops:
            break
    else:
        raise ConfigError("Infer.transforms", "missing: deploy would not know how to preprocess images",
                          "add Infer: {transforms: [DecodeImage, ResizeImage, CropImage, NormalizeImage, "
                          "ToCHWImage]} (the eval preprocessing)")
    chw = outputs_channel_first(create_operators(ops, key))  # the training dataset's rule
    ops = copy.deepcopy(ops)
    if not chw:
        logger.info("export: %s yields HWC images; appending ToCHWImage as the dataset does", key)
        ops.append({"ToCHWImage": None})
    return ops, key


def export_postprocess(config: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """``Infer.PostProcess`` as ``{name: X, **kwargs}`` (or None)."""
    post = get_by_path(config, "Infer.PostProcess")
    if not post:
        return None
    name, kwargs = split_component(post, "Infer.PostProcess")
    return {"name": name, **kwargs}


def write_inference_yml(model_dir: str, meta: Dict[str, Any]) -> str:
    """Write ``meta`` as ``<model_dir>/inference.yml`` (atomically); returns the path."""
    path = os.path.join(model_dir, INFERENCE_YML)
    atomic_write_text(path, yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))
    return path


def read_inference_yml(model_dir: str) -> Dict[str, Any]:
    """Read ``<model_dir>/inference.yml``; an absent file gives ``{}`` (e.g. a PaddleClas export)."""
    path = os.path.join(model_dir, INFERENCE_YML)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        try:
            meta = yaml_load(f) or {}
        except yaml.YAMLError as e:
            raise ConfigError("Global.inference_model_dir", f"{path} is not valid YAML: {e}",
                              "re-export the model") from e
    if not isinstance(meta, dict):
        raise ConfigError("Global.inference_model_dir", f"{path}: expected a mapping, got {type(meta).__name__}")
    return meta
