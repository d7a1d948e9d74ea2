"""Predict images with a trained model in dygraph (Infer section + Topk post-process).

    python tools/infer.py -c my.yaml -o Global.pretrained_model=output/ResNet18/best_model -o Infer.infer_imgs=img.jpg
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppfreeze.cli import build_parser, run_tool  # noqa: E402


def infer(config, args) -> None:
    from ppfreeze.config import ConfigError
    from ppfreeze.engine import Engine
    from ppfreeze.engine.predict import predict
    if not config["Global"].get("pretrained_model"):
        raise ConfigError("Global.pretrained_model", "not set: predictions would come from random weights",
                          "add -o Global.pretrained_model=output/<Arch>/best_model")
    predict(Engine(config, mode="infer"))


def main(argv=None) -> int:
    return run_tool(build_parser("Predict images with a trained model (dygraph, Infer section)."), infer, argv)


if __name__ == "__main__":
    sys.exit(main())
