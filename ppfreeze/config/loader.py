"""Load a YAML config with ``_BASE_`` inheritance and ``-o Key.sub=value`` overrides."""
from __future__ import annotations

import copy
import os
import re
from typing import Any, Dict, List, Optional, Sequence

import yaml

from ..utils.text import read_text
from .errors import ConfigError, did_you_mean
from .schema import validate_config

BASE_KEY = "_BASE_"


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``; users write both)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def _check_no_duplicate_keys(loader: yaml.SafeLoader, node: yaml.MappingNode) -> None:
    """A key given twice in one mapping is a mistake (PyYAML keeps the last silently).

    ``<<`` merge keys are left to PyYAML: keys written next to a merge override it on purpose.
    """
    seen: Dict[Any, Any] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:   # an unhashable key: PyYAML reports it itself
            continue
        if first is not None:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"duplicate key {key!r} (first given on line {first.line + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark


def _construct_yaml_map(loader: yaml.SafeLoader, node: yaml.MappingNode):
    data: Dict[Any, Any] = {}
    yield data
    _check_no_duplicate_keys(loader, node)
    data.update(loader.construct_mapping(node))


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_yaml_map)


def yaml_load(text_or_stream) -> Any:
    """``yaml.safe_load`` with the float fix above; a duplicate key is a ``yaml.YAMLError``."""
    return yaml.load(text_or_stream, Loader=_Loader)


DELETE_MARK = "_delete_"  # mmengine habit: ``_delete_: true`` replaces instead of merging


def _read_yaml(path: str) -> Dict[str, Any]:
    if not os.path.isfile(path):
        raise ConfigError("", f"config file not found: {path}", "check the path given to -c / _BASE_")
    text = read_text(path, "")
    try:
        data = yaml_load(text)
    except (ValueError, OverflowError) as e:   # a constructor's, e.g. the date 2001-13-45
        raise ConfigError("", f"YAML value error in {path}: {e}", "quote the value to keep it a string") from e
    except RecursionError as e:
        raise ConfigError("", f"YAML error in {path}: nested too deeply") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else path
        problem = getattr(e, "problem", None) or str(e)
        hint = ("remove one of the two" if "duplicate key" in problem else
                "check indentation and that every 'key: value' has a space after ':'")
        raise ConfigError("", f"YAML error in {where}: {problem}", hint) from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("", f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def merge_dicts(base: Dict[str, Any], override: Dict[str, Any]) -> Dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base`` (lists are replaced)."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and v.get(DELETE_MARK):
            out[k] = {kk: vv for kk, vv in v.items() if kk != DELETE_MARK}
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_dicts(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _load_with_bases(path: str, chain: Sequence[str] = ()) -> Dict[str, Any]:
    path = os.path.abspath(path)
    if path in chain:
        raise ConfigError(BASE_KEY, f"circular _BASE_ inheritance: {' -> '.join(list(chain) + [path])}")
    data = _read_yaml(path)
    bases = data.pop(BASE_KEY, None)
    if bases is None:
        return data
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(base, str) and base for base in bases):
        raise ConfigError(BASE_KEY, f"{path}: expected a path or a list of paths, got {bases!r}")
    merged: Dict[str, Any] = {}
    for base in bases:
        base_path = base if os.path.isabs(base) else os.path.join(os.path.dirname(path), base)
        if not os.path.isfile(base_path):
            raise ConfigError(BASE_KEY, f"{path}: base config '{base}' not found (looked at {base_path})",
                              "_BASE_ paths are relative to the file that names them")
        merged = merge_dicts(merged, _load_with_bases(base_path, list(chain) + [path]))
    return merge_dicts(merged, data)


def parse_override(text: str) -> tuple:
    """Split ``Key.sub.0.x=value`` into (['Key','sub','0','x'], parsed value).

    The value is parsed as a YAML scalar or list (``null`` -> None, ``[1,2]`` -> list); only
    the first '=' separates key from value, so values may contain '='.
    """
    if "=" not in text:
        raise ConfigError("-o", f"override '{text}' has no '='", "write it as Key.sub=value, e.g. Global.epochs=5")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError("-o", f"override '{text}' has an empty key part", "write it as Key.sub=value")
    try:
        value = yaml_load(raw) if raw.strip() != "" else ""
    except (yaml.YAMLError, ValueError, OverflowError, RecursionError):
        value = raw  # not valid YAML: keep the raw string (e.g. a path with ': ')
    return key.split("."), value


def _set_path(cfg: Any, parts: List[str], value: Any, full_key: str) -> None:
    node = cfg
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        parent = ".".join(parts[:i])
        if isinstance(node, list):
            idx = _list_index(part)
            if idx is None:
                raise ConfigError(full_key, f"'{parent}' is a list; '{part}' is not an index",
                                  f"use a number 0..{len(node) - 1}")
            if not -len(node) <= idx < len(node):
                raise ConfigError(full_key, f"index {idx} out of range for list '{parent}' of length {len(node)}")
            if last:
                node[idx] = value
            else:
                node = node[idx]
            continue
        if not isinstance(node, dict):
            raise ConfigError(full_key, f"'{parent}' is a {type(node).__name__} ({node!r}), it has no key '{part}'")
        if last:
            node[part] = value
        else:
            if node.get(part) is None:  # new or empty (e.g. '- ToCHWImage:') -> a mapping
                node[part] = {}
            node = node[part]


def _list_index(part: str) -> Optional[int]:
    """``part`` as a list index ("0", "-1"), or None when it is not one."""
    digits = part[1:] if part.startswith("-") else part
    if not digits or len(digits) > 18 or not all(c in "0123456789" for c in digits):
        return None
    return int(part)


def apply_overrides(cfg: Dict[str, Any], overrides: Optional[Sequence[str]]) -> Dict[str, Any]:
    """Apply ``-o`` overrides in order and return the config (modified in place)."""
    for text in overrides or []:
        parts, value = parse_override(text)
        _set_path(cfg, parts, value, ".".join(parts))
    return cfg


def get_by_path(cfg: Dict[str, Any], path: str, default: Any = None) -> Any:
    """Read ``A.b.0.c`` from a nested config, returning ``default`` when absent."""
    node: Any = cfg
    for part in path.split("."):
        idx = _list_index(part) if isinstance(node, list) else None
        if idx is not None and -len(node) <= idx < len(node):
            node = node[idx]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return default
    return node


def load_config(path: str, overrides: Optional[Sequence[str]] = None, validate: bool = True) -> Dict[str, Any]:
    """Load ``path`` (with its ``_BASE_`` chain), apply overrides and validate.

    Raises:
        ConfigError: for every user mistake, naming the key path and the fix.
    """
    cfg = _load_with_bases(path)
    apply_overrides(cfg, overrides)
    if validate:
        validate_config(cfg, source=path)
    return cfg


def save_config(cfg: Dict[str, Any], path: str) -> None:
    """Write the merged config as YAML (atomically)."""
    from ..utils.io import atomic_write_text
    atomic_write_text(path, yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))


def format_config(cfg: Dict[str, Any]) -> str:
    """Pretty YAML text of the config for the start-of-run log."""
    return yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)


__all__ = ["load_config", "apply_overrides", "parse_override", "merge_dicts", "save_config",
           "get_by_path", "format_config", "did_you_mean"]
