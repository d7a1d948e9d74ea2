"""Export a trained model for paddle.inference (and optionally ONNX).

    python tools/export_model.py -c my.yaml -o Global.pretrained_model=output/ResNet50/best_model \
        -o Global.save_inference_dir=./inference [--onnx]

Writes inference.json + inference.pdiparams (Global.export_format: pdmodel -> inference.pdmodel)
and inference.yml (the preprocessing, post-processing, labels and Freeze summary deploy uses).
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppfreeze.cli import build_parser, run_tool  # noqa: E402


def export(config, args) -> None:
    from ppfreeze.export import export_model
    result = export_model(config, onnx=args.onnx)
    print(f"exported {result.meta['Global']['model_name']} to {result.save_dir}")


def main(argv=None) -> int:
    parser = build_parser("Export a model for paddle.inference: program, weights and inference.yml.")
    parser.add_argument("--onnx", action="store_true",
                        help="also write inference.onnx (needs paddle2onnx: pip install -e .[onnx])")
    return run_tool(parser, export, argv)


if __name__ == "__main__":
    sys.exit(main())
