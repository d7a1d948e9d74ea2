"""Lazy attributes for packages that mix pure-numpy modules with paddle-backed ones."""
from __future__ import annotations

from importlib import import_module
from typing import Any, Callable, Dict


def lazy_getattr(package: str, table: Dict[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` (PEP 562) importing ``table[name]`` submodules on first use.

    Keeps ``import ppfreeze.<package>`` free of paddle so deploy tools stay light.
    """
    def __getattr__(name: str) -> Any:
        if name in table:
            return getattr(import_module(f".{table[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return __getattr__
