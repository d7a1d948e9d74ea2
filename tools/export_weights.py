"""Save one sublayer's weights (e.g. the classifier ``fc``) to its own file, or load such a file back.

    python tools/export_weights.py -c my.yaml -o Global.pretrained_model=output/ResNet50/best_model \
        --layer fc --output fc.pdparams
    python tools/export_weights.py -c my.yaml -o Global.pretrained_model=backbone_weights \
        --layer fc --load fc.pdparams --output merged.pdparams     # whole model with that fc
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppfreeze.cli import build_parser, run_tool  # noqa: E402


def export_weights(config, args) -> None:
    from ppfreeze.export import load_sublayer_weights, save_sublayer_weights
    from ppfreeze.export.exporter import build_export_engine
    from ppfreeze.config import ConfigError
    from ppfreeze.utils.io import atomic_paddle_save
    if not args.load and not config["Global"].get("pretrained_model"):
        raise ConfigError("Global.pretrained_model", "not set: there are no trained weights to take the layer from",
                          "add -o Global.pretrained_model=output/<Arch>/best_model")
    engine, _ = build_export_engine(config)
    if args.load:
        report = load_sublayer_weights(engine.model, args.layer, args.load)
        atomic_paddle_save(engine.model.state_dict(), args.output)
        print(f"loaded {len(report.loaded)} tensors into '{args.layer}'; full model saved to {args.output}")
    else:
        names = save_sublayer_weights(engine.model, args.layer, args.output)
        print(f"saved '{args.layer}' ({', '.join(names)}) to {args.output}")


def main(argv=None) -> int:
    parser = build_parser("Save or load the weights of one named sublayer (e.g. fc).")
    parser.add_argument("--layer", required=True, help="dotted sublayer name, e.g. fc or blocks.3")
    parser.add_argument("--output", required=True, help="the .pdparams file to write")
    parser.add_argument("--load", default=None, metavar="SUBLAYER.pdparams",
                        help="load this sublayer file into --layer and save the whole model to --output")
    return run_tool(parser, export_weights, argv)


if __name__ == "__main__":
    sys.exit(main())
