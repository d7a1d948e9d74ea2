"""Save one sublayer's weights (e.g. the classifier ``fc``) or the tensors a Freeze plan trains
(PEFT adapters + head) to their own file, or load such a file back.

    python tools/export_weights.py -c my.yaml -o Global.pretrained_model=output/ResNet50/best_model \
        --layer fc --output fc.pdparams
    python tools/export_weights.py -c my.yaml -o Global.pretrained_model=backbone_weights \
        --layer fc --load fc.pdparams --output merged.pdparams     # whole model with that fc
    python tools/export_weights.py -c lora.yaml -o Global.pretrained_model=output/ViT/best_model \
        --adapters --output adapters.pdparams                      # LoRA/prompts + head only
    python tools/export_weights.py -c lora.yaml -o Global.pretrained_model=base_weights \
        --load-adapters adapters.pdparams --output finetuned.pdparams   # base + adapters
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppfreeze.cli import build_parser, run_tool  # noqa: E402


def export_weights(config, args) -> None:
    from ppfreeze.config import ConfigError
    from ppfreeze.export import (load_sublayer_weights, load_trained_tensors, save_sublayer_weights,
                                 save_trained_tensors)
    from ppfreeze.export.exporter import build_export_engine
    from ppfreeze.utils.io import atomic_paddle_save
    modes = [m for m, on in (("--layer", args.layer), ("--adapters", args.adapters),
                             ("--load-adapters", args.load_adapters)) if on]
    if len(modes) != 1:
        raise ConfigError("--layer", f"give exactly one of --layer, --adapters, --load-adapters (got {modes or 'none'})")
    if args.load and not args.layer:
        raise ConfigError("--load", "loads a sublayer file: it needs --layer", "use --load-adapters for adapter files")
    loading = args.load or args.load_adapters
    if not loading and not config["Global"].get("pretrained_model"):
        raise ConfigError("Global.pretrained_model", "not set: there are no trained weights to take the tensors from",
                          "add -o Global.pretrained_model=output/<Arch>/best_model")
    engine, _ = build_export_engine(config)
    model, plan = engine.unwrapped_model, engine.freeze
    if args.load_adapters:
        report = load_trained_tensors(model, plan, args.load_adapters)
        atomic_paddle_save(model.state_dict(), args.output)
        print(f"loaded {len(report.loaded)} trained tensors; full model saved to {args.output}")
    elif args.adapters:
        names = save_trained_tensors(model, plan, args.output)
        print(f"saved the {len(names)} tensors the Freeze plan trains ({os.path.getsize(args.output):,} bytes) "
              f"to {args.output}")
    elif args.load:
        report = load_sublayer_weights(model, args.layer, args.load)
        atomic_paddle_save(model.state_dict(), args.output)
        print(f"loaded {len(report.loaded)} tensors into '{args.layer}'; full model saved to {args.output}")
    else:
        names = save_sublayer_weights(model, args.layer, args.output)
        print(f"saved '{args.layer}' ({', '.join(names)}) to {args.output}")


def main(argv=None) -> int:
    parser = build_parser("Save or load one sublayer's weights (e.g. fc) or the tensors a Freeze plan trains.")
    parser.add_argument("--layer", default=None, help="dotted sublayer name, e.g. fc, blocks.3 or Student")
    parser.add_argument("--adapters", action="store_true",
                        help="save the tensors the Freeze plan trains (PEFT adapters, head, unfrozen blocks)")
    parser.add_argument("--load-adapters", default=None, metavar="ADAPTERS.pdparams",
                        help="load a --adapters file onto the base weights and save the whole model to --output")
    parser.add_argument("--output", required=True, help="the .pdparams file to write")
    parser.add_argument("--load", default=None, metavar="SUBLAYER.pdparams",
                        help="load this sublayer file into --layer and save the whole model to --output")
    return run_tool(parser, export_weights, argv)


if __name__ == "__main__":
    sys.exit(main())
