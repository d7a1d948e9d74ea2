"""Run a benchmark script again as a child process and read the JSON line it prints.

Each measured variant runs in its own process, so its peak memory and thread settings are its own.
"""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Dict, List, Optional


def run_json_child(script: str, args: List[str], env: Optional[Dict[str, str]] = None,
                   cwd: Optional[str] = None) -> dict:
    """``python script --child *args``; returns the last line of its stdout that is a JSON object."""
    out = subprocess.run([sys.executable, script, "--child", *args], env=env, cwd=cwd,
                         capture_output=True, text=True, check=True).stdout
    return json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])
