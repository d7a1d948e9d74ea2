"""Load the repository's scripts (``tools/*.py``, ``deploy/python/*.py``, ...) as modules, so tests
can call their functions; a script's ``if __name__ == "__main__"`` block does not run."""
from __future__ import annotations

import importlib.util
import os
from types import ModuleType

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script(path: str, name: str) -> ModuleType:
    """The script at ``path`` (relative to the repository root), executed as a fresh module ``name``."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_tool(name: str) -> ModuleType:
    """``tools/<name>.py``."""
    return load_script(os.path.join("tools", f"{name}.py"), name)


def load_deploy(name: str) -> ModuleType:
    """``deploy/python/<name>.py``."""
    return load_script(os.path.join("deploy", "python", f"{name}.py"), f"deploy_{name}")
