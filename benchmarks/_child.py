"""Run a benchmark script again as a child process and read the JSON line it prints.

Each measured variant runs in its own process, so its peak memory and thread settings are its own.
"""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Dict, List, Optional


def run_json_child(script: str, args: List[str], env: Optional[Dict[str, str]] = None,
                   cwd: Optional[str] = None, show_stderr: bool = False, python: Optional[str] = None) -> dict:
    """``python script --child *args``; returns the last line of its stdout that is a JSON object.

    ``show_stderr`` lets the child's stderr through (e.g. a profile); ``python``: another interpreter.
    On failure the child's stderr tail is part of the error.
    """
    proc = subprocess.run([python or sys.executable, script, "--child", *args], env=env, cwd=cwd,
                          stdout=subprocess.PIPE, stderr=None if show_stderr else subprocess.PIPE, text=True)
    if proc.returncode:
        tail = (proc.stderr or "")[-3000:]
        raise RuntimeError(f"{script} --child {' '.join(args)} exited {proc.returncode}:\n{tail}")
    out = proc.stdout
    return json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])
