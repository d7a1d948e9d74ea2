"""Legacy ``inference.pdmodel`` export in a child process.

Paddle picks its IR (PIR or the legacy ProgramDesc) when it is imported, from the
environment variable ``FLAGS_enable_pir_api``; ``paddle.set_flags`` later has no effect on
``paddle.jit.save`` (measured on 3.3.1). So a process that already runs PIR exports the
legacy format by re-running the export in a child with ``FLAGS_enable_pir_api=0``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any, Dict, List

from ..config.errors import ConfigError

FLAG = "FLAGS_enable_pir_api"
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pir_enabled() -> bool:
    """True when this process's paddle runs the PIR (``jit.save`` then writes ``inference.json``)."""
    import paddle
    return bool(paddle.get_flags(FLAG)[FLAG])


def export_in_legacy_process(config: Dict[str, Any], save_dir: str, onnx: bool) -> Dict[str, Any]:
    """Run ``export_model`` in a child with the legacy IR; returns its ``inference.yml`` content.

    A ConfigError in the child is raised here unchanged (key, message, hint).
    """
    with tempfile.TemporaryDirectory(prefix="ppfreeze-export-") as work:
        config_path, result_path = os.path.join(work, "config.json"), os.path.join(work, "result.json")
        with open(config_path, "w", encoding="utf-8") as f:
            json.dump(config, f)
        env = dict(os.environ, **{FLAG: "0"})
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_REPO_ROOT, env.get("PYTHONPATH")) if p)
        cmd = [sys.executable, "-m", "ppfreeze.export.legacy", config_path, os.path.abspath(save_dir), result_path]
        proc = subprocess.run(cmd + (["--onnx"] if onnx else []), env=env)
        result = _read_result(result_path)
    if "error" in result:
        raise ConfigError(**result["error"])
    if proc.returncode != 0 or "meta" not in result:
        raise RuntimeError(f"the legacy (pdmodel) export child process failed with exit code {proc.returncode}; "
                           f"its output is above")
    return result["meta"]


def _read_result(path: str) -> Dict[str, Any]:
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _child(argv: List[str]) -> int:
    from .exporter import export_model
    config_path, save_dir, result_path = argv[:3]
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    try:
        result: Dict[str, Any] = {"meta": export_model(config, save_dir, onnx="--onnx" in argv).meta}
    except ConfigError as e:
        result = {"error": {"key": e.key, "message": e.message, "hint": e.hint}}
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 2 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
