"""Turn a PaddleClas ``transform_ops`` list into op objects and run them.

Layout: ops are written for HWC images, but PaddleClas runs some of them on CHW data too
(``RandomErasing`` after ``ToTensor``). :func:`create_operators` follows the layout down the
list: an op that changes it has ``output_channel_first(channel_first) -> bool``; an op that
works on either has a ``channel_first`` attribute, which is set to its input's layout.

Samples: ops take an image, or (as with PaddleClas's ``CustomLabelDataset``) a dict holding it
under ``"img"``; ops that also produce a label (``RandomRot90``, ``BlurImage``) add it to the
dict through ``augment(img) -> (img, {name: value})``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from ...config.errors import ConfigError
from ...utils.builder import split_component
from ..registry import OPS


def create_operators(op_cfgs: Optional[List[Any]], key: str = "transform_ops") -> List[Callable]:
    """Build ops from ``[{DecodeImage: {to_rgb: true}}, {ToCHWImage: null}, ...]``.

    ``key`` is the config path of the list, used in error messages
    (e.g. ``DataLoader.Train.dataset.transform_ops``).
    """
    if op_cfgs is None:
        return []
    if not isinstance(op_cfgs, list):
        raise ConfigError(key, f"expected a list of ops such as [{{DecodeImage: {{to_rgb: true}}}}], "
                               f"got {type(op_cfgs).__name__}")
    ops = []
    for i, op_cfg in enumerate(op_cfgs):
        item_key = f"{key}[{i}]"
        name, _ = split_component(op_cfg, item_key)
        OPS.get(name, item_key)  # an unknown op is reported at the list entry
        op_key = f"{item_key}.{name}"
        ops.append(OPS.build(op_cfg, op_key))
    set_layouts(ops)
    return ops


def set_layouts(ops: List[Callable], channel_first: bool = False) -> bool:
    """Tell layout-aware ops whether their input is CHW; return whether the list's output is CHW."""
    for op in ops:
        if hasattr(op, "channel_first") and not hasattr(op, "output_channel_first"):
            op.channel_first = channel_first
        if hasattr(op, "output_channel_first"):
            channel_first = op.output_channel_first(channel_first)
    return channel_first


def outputs_channel_first(ops: List[Callable]) -> bool:
    """Whether ``ops`` (applied to decoded HWC images) yield CHW images."""
    channel_first = False
    for op in ops:
        if hasattr(op, "output_channel_first"):
            channel_first = op.output_channel_first(channel_first)
    return channel_first


def transform(data: Any, ops: List[Callable]) -> Any:
    """Apply ``ops`` in order to an image, or to the ``"img"`` of a sample dict."""
    if isinstance(data, dict):
        return _transform_sample(data, ops)
    for op in ops:
        data = op(data)
    return data


def _transform_sample(sample: Dict[str, Any], ops: List[Callable]) -> Dict[str, Any]:
    sample = dict(sample)
    for op in ops:
        if hasattr(op, "augment_with_labels"):   # ops that also give labels (RandomRot90, BlurImage)
            sample["img"], produced = op.augment_with_labels(sample["img"])
            sample.update(produced)
        else:
            sample["img"] = op(sample["img"])
    return sample
