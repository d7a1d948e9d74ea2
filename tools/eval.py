"""Evaluate a trained model on DataLoader.Eval.

    python tools/eval.py -c my.yaml -o Global.pretrained_model=output/ResNet50/best_model
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # make_demo_data.py

from ppfreeze.cli import build_parser, run_tool  # noqa: E402


def evaluate(config, args) -> None:
    import logging
    from ppfreeze.config import ConfigError
    from make_demo_data import ensure_demo_data
    from ppfreeze.engine import Engine
    if not config["Global"].get("pretrained_model"):
        raise ConfigError("Global.pretrained_model", "not set: evaluation would use random weights",
                          "add -o Global.pretrained_model=output/<Arch>/best_model")
    engine = Engine(config, mode="eval")
    ensure_demo_data(config)
    metrics = engine.eval()
    logging.getLogger("ppfreeze").info("[Eval][Avg]%s", ", ".join(f"{k}: {v:.5f}" for k, v in metrics.items()))


def main(argv=None) -> int:
    return run_tool(build_parser("Evaluate a model (classification Top-k or retrieval Recall@k/mAP)."), evaluate, argv)


if __name__ == "__main__":
    sys.exit(main())
