"""One builder for every ``{name: X, **kwargs}`` component (PaddleClas style).

A registry maps names to classes or factory functions.  ``build`` accepts both spellings
PaddleClas uses -- ``{name: CELoss, epsilon: 0.1}`` and ``{CELoss: {epsilon: 0.1}}`` --
checks the keyword arguments against the callable's signature (unknown names, numbers given
as arithmetic strings such as ``1.0/255.0``) and reports every mistake as a :class:`ConfigError`
naming the full key path and the known alternatives.

Error boundary: a component validates its own argument values and raises ``ConfigError(arg,
...)``; ``build`` places that key under the component's path. Any other exception raised while
constructing a component is a bug in the component and propagates with its traceback.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..config.errors import ConfigError, did_you_mean
from ..config.expr import to_number

# annotations (as written in signatures) whose values must be numbers
_NUMBER_ANNOTATIONS = {"float", "int", "Optional[float]", "Optional[int]", "Union[int, float]", "Number"}


def split_component(cfg: Any, key: str) -> Tuple[str, Dict[str, Any]]:
    """Return ``(name, kwargs)`` from either ``{name: X, ...}`` or ``{X: {...}}``."""
    if isinstance(cfg, str):
        return cfg, {}
    if not isinstance(cfg, dict):
        raise ConfigError(key, f"expected a mapping with a 'name' key, got {type(cfg).__name__} {cfg!r}")
    if "name" in cfg:
        kwargs = {k: v for k, v in cfg.items() if k != "name"}
        return cfg["name"], kwargs
    if len(cfg) == 1:
        name, kwargs = next(iter(cfg.items()))
        if kwargs is None:
            kwargs = {}
        if not isinstance(kwargs, dict):
            raise ConfigError(f"{key}.{name}", f"expected a mapping of arguments, got {kwargs!r}")
        return name, dict(kwargs)
    raise ConfigError(key, f"expected a 'name' key naming the component, got keys {sorted(cfg)}")


class Registry:
    """Name -> callable table for one kind of component (ops, losses, models, ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: Dict[str, Callable] = {}

    def register(self, obj: Optional[Callable] = None, name: Optional[str] = None):
        """Register ``obj`` (usable as a decorator, optionally with ``name=``)."""
        def _add(o: Callable) -> Callable:
            key = name or o.__name__
            if key in self._items and self._items[key] is not o:
                # two components under one name: the later one would silently win
                raise KeyError(f"{self.kind} '{key}' is registered twice: {_where(self._items[key])} and {_where(o)}")
            self._items[key] = o
            return o
        return _add(obj) if obj is not None else _add

    def names(self) -> List[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def get(self, name: str, key: str = "") -> Callable:
        """Look up ``name``; unknown names raise a ConfigError with a did-you-mean."""
        if name not in self._items:
            raise ConfigError(key, f"unknown {self.kind} '{name}'",
                              f"known: {', '.join(self.names())}.{did_you_mean(name, self._items)}")
        return self._items[name]

    def build(self, cfg: Any, key: str = "", **extra: Any) -> Any:
        """Build a component from its config; ``extra`` kwargs come from the engine, not the user."""
        name, kwargs = split_component(cfg, key)
        factory = self.get(name, f"{key}.name" if key else "name")
        check_kwargs(factory, kwargs, f"{key}" if key else name, name)
        kwargs = coerce_numbers(factory, kwargs, key or name)
        try:
            return factory(**kwargs, **extra)
        except ConfigError as e:  # the component named its own argument; say where it sits
            raise e.nested_under(key) from e.__cause__


def build_list(registry: Registry, cfgs: Any, key: str, example: str) -> List[Tuple[str, Any]]:
    """Build a PaddleClas component list (``[{TopkAcc: {topk: [1, 5]}}, ...]``) as (name, object) pairs.

    ``example`` is a list item shown when ``cfgs`` is not a list, e.g. ``'- TopkAcc: {topk: [1, 5]}'``.
    """
    if not isinstance(cfgs, list):
        raise ConfigError(key, f"expected a list, got {type(cfgs).__name__} {cfgs!r}",
                          f"write each entry as a list item: {example!r}")
    built = []
    for index, item in enumerate(cfgs):
        item_key = f"{key}.{index}"
        name, kwargs = split_component(item, item_key)
        registry.get(name, item_key)  # unknown names fail here, naming the list item
        built.append((name, registry.build({name: kwargs}, f"{item_key}.{name}")))
    return built


def _where(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"


def _signature(factory: Callable) -> Optional[inspect.Signature]:
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        return inspect.signature(target)
    except (TypeError, ValueError):
        return None


def coerce_numbers(factory: Callable, kwargs: Dict[str, Any], key: str) -> Dict[str, Any]:
    """Arguments annotated as numbers accept PaddleClas's arithmetic strings (``1.0/255.0``);
    any other non-number there is a ConfigError naming the argument."""
    sig = _signature(factory)
    if sig is None:
        return kwargs
    out = dict(kwargs)
    for name, value in kwargs.items():
        param = sig.parameters.get(name)
        annotation = param.annotation if param is not None else inspect.Parameter.empty
        if not isinstance(annotation, str):
            annotation = getattr(annotation, "__name__", str(annotation))
        if annotation not in _NUMBER_ANNOTATIONS or value is None:
            continue
        number = to_number(value, f"{key}.{name}")
        if annotation in ("int", "Optional[int]"):
            if not float(number).is_integer():
                raise ConfigError(f"{key}.{name}", f"expected an integer, got {value!r}")
            number = int(number)
        out[name] = number
    return out


def check_kwargs(factory: Callable, kwargs: Dict[str, Any], key: str, name: str) -> None:
    """Raise a ConfigError for keyword arguments the factory does not accept."""
    sig = _signature(factory)
    if sig is None:
        return
    params = sig.parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    accepted = [p for p in params if p not in ("self",)]
    for k in kwargs:
        if k not in params:
            hint = f"accepted: {', '.join(accepted)}.{did_you_mean(k, accepted)}" if accepted else "it takes no arguments"
            raise ConfigError(f"{key}.{k}", f"'{name}' has no argument '{k}'", hint)
