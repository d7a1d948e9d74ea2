"""Print the ``-o`` overrides that point a config's demo-data paths at another demo root.

    python test_tipc/demo_data_overrides.py configs/quick_start/ResNet18.yaml ./dataset/tipc_lite/ppfreeze_demo
    -> -o DataLoader.Train.dataset.image_root=./dataset/tipc_lite/ppfreeze_demo/ -o ...

Every string value of the config (after ``_BASE_`` merging) that lies inside a ``ppfreeze_demo``
directory is rewritten to the same place under ROOT, so a product config trains on the lite
set that ``test_tipc/prepare.sh`` makes. The TIPC script adds the overrides to the commands
it runs, so the logged command shows them. Needs no paddle (fast).
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Any, Iterator, List, Optional, Tuple

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))

from make_demo_data import DEMO_ROOT_NAME  # noqa: E402
from ppfreeze.config.errors import ConfigError  # noqa: E402
from ppfreeze.config.loader import load_config  # noqa: E402


def string_leaves(node: Any, prefix: str = "") -> Iterator[Tuple[str, str]]:
    """(dotted key path, value) of every string in a config tree; list items by index."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from string_leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from string_leaves(value, f"{prefix}.{index}")
    elif isinstance(node, str):
        yield prefix, node


def redirect(path: str, new_root: str) -> Optional[str]:
    """``path`` with its ``ppfreeze_demo`` directory replaced by ``new_root``; None if outside one."""
    parts = path.replace("\\", "/").split("/")
    if DEMO_ROOT_NAME not in parts:
        return None
    rest = parts[parts.index(DEMO_ROOT_NAME) + 1:]
    return "/".join([new_root.rstrip("/")] + rest)


def demo_overrides(config_path: str, new_root: str) -> List[str]:
    """``key=value`` overrides for every demo path in the config at ``config_path``."""
    cfg = load_config(config_path, validate=False)
    out = []
    for key, value in string_leaves(cfg):
        new = redirect(value, new_root)
        if new is not None and new != value:
            out.append(f"{key}={new}")
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="-o overrides redirecting a config's demo-data paths.")
    parser.add_argument("config", help="a training or deploy YAML config")
    parser.add_argument("root", help="the demo root to use instead, e.g. ./dataset/tipc_lite/ppfreeze_demo")
    args = parser.parse_args(argv)
    try:
        overrides = demo_overrides(args.config, args.root)
    except ConfigError as e:
        print(f"demo_data_overrides: {e}", file=sys.stderr)
        return 2
    print(" ".join(f"-o {shlex.quote(o)}" for o in overrides))
    return 0


if __name__ == "__main__":
    sys.exit(main())
