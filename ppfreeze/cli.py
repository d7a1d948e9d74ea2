"""Shared command-line handling for ``tools/*.py``: ``-c``, ``-o``, clean error exits.

Kept free of paddle imports so ``Global.num_threads`` is applied before paddle loads (importing
paddle pins one thread otherwise; ``ppfreeze/runtime_env.py``).
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Dict, List, Optional

from .config import load_config
from .errors import PPFreezeError, report
from .runtime_env import configure_threads

EPILOG = """override examples:
  -o Global.epochs=5 -o Global.device=cpu
  -o Freeze.until=stage2 -o Optimizer.lr.learning_rate=0.01
  -o DataLoader.Train.dataset.transform_ops.1.RandCropImage.size=32   (list items by index)
  -o Global.pretrained_model=null                                      (YAML values: null, true, [1, 2])
"""


def build_parser(description: str) -> argparse.ArgumentParser:
    """Parser with PaddleClas's ``-c config.yaml`` and repeatable ``-o Key.sub=value``."""
    parser = argparse.ArgumentParser(description=description, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", required=True, help="path to the YAML config")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="Key.sub=value",
                        help="override a config value (repeatable); the value is parsed as YAML")
    return parser


def run_tool(parser: argparse.ArgumentParser, job: Callable[[Dict[str, Any], argparse.Namespace], Any],
             argv: Optional[List[str]] = None) -> int:
    """Parse args, load the config, run ``job``; user mistakes exit 2 with one clear message."""
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.override)
        configure_threads(config["Global"].get("num_threads"))   # before anything imports paddle
        job(config, args)
    except PPFreezeError as e:  # a user-fixable problem: one message; anything else is a bug (traceback)
        return report(e)
    except KeyboardInterrupt as e:  # training adds which checkpoint a resume continues from (read from disk)
        print("ppfreeze: interrupted" + (f". {e}" if str(e) else ""), file=sys.stderr)
        return 130
    return 0
