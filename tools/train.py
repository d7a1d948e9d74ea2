"""Train a model from a PaddleClas-style YAML config.

    python tools/train.py -c configs/quick_start/ResNet18_freeze.yaml -o Global.epochs=5
    python tools/train.py -c my.yaml --freeze-report      # print the Freeze plan and exit
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # make_demo_data.py

from ppfreeze.cli import build_parser, run_tool  # noqa: E402


def train(config, args) -> None:
    from make_demo_data import ensure_demo_data
    from ppfreeze.engine import Engine
    if args.freeze_report:
        from ppfreeze.freeze import format_report
        engine = Engine(config, mode="report")
        print(format_report(engine.freeze_report()))
        return
    engine = Engine(config, mode="train")   # sets up logging first, so the demo line is logged
    ensure_demo_data(config)
    engine.train()


def main(argv=None) -> int:
    parser = build_parser("Train a classification or retrieval model (PaddleClas config schema + Freeze).")
    parser.add_argument("--freeze-report", action="store_true",
                        help="dry run: build the model, print the resolved Freeze plan (matched parameters, "
                             "trainable/frozen counts, FLOPs share, methods) and exit without training")
    return run_tool(parser, train, argv)


if __name__ == "__main__":
    sys.exit(main())
