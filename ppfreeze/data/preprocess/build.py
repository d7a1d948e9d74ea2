"""Turn a PaddleClas ``transform_ops`` list into op objects and run them."""
from __future__ import annotations

from typing import Any, Callable, List, Optional

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
    return ops


def transform(data: Any, ops: List[Callable]) -> Any:
    """Apply ``ops`` in order."""
    for op in ops:
        data = op(data)
    return data
