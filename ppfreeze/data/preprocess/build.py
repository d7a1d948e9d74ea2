"""Turn a PaddleClas ``transform_ops`` list into op objects and run them."""
from __future__ import annotations

from typing import Any, Callable, List, Optional

from ...config.errors import ConfigError
from ...utils.builder import split_component
from ..registry import OPS


def nest_config_error(err: ConfigError, prefix: str) -> ConfigError:
    """Return ``err`` with its key placed under ``prefix``.

    Components report their own argument names (``scale``); the caller knows where the
    component sits in the config (``DataLoader.Train.dataset.transform_ops[2].NormalizeImage``).
    Keys that already start with ``prefix`` are left alone.
    """
    if not prefix or err.key.startswith(prefix):
        return err
    nested = ConfigError(f"{prefix}.{err.key}" if err.key else prefix, err.message, err.hint)
    nested.__cause__ = err.__cause__
    return nested


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
        try:
            ops.append(OPS.build(op_cfg, op_key))
        except ConfigError as e:
            raise nest_config_error(e, op_key) from e.__cause__
    return ops


def transform(data: Any, ops: List[Callable]) -> Any:
    """Apply ``ops`` in order."""
    for op in ops:
        data = op(data)
    return data
