"""Write a ppfreeze training checkpoint in PaddleClas's layout, for PaddleClas's own resume.

    python tools/export_paddleclas_checkpoint.py -c my.yaml --checkpoint output/ResNet50/latest \
        --output pc_output/ResNet50/latest
    python PaddleClas/tools/train.py -c its_config.yaml -o Global.checkpoints=pc_output/ResNet50/latest

Writes ``<output>.pdparams``, ``.pdopt`` (optimizer state under the parameter names PaddleClas's
trainer generates), ``.pdstates`` (``{metric, epoch}``) and, with EMA, ``.pdema``. ``-c`` is the
config the checkpoint was trained with. See docs/reliability.md ("Checkpoints across tools").
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppfreeze.cli import build_parser, run_tool  # noqa: E402


def export(config, args) -> None:
    from ppfreeze.engine.paddleclas_ckpt import write_paddleclas_checkpoint
    summary = write_paddleclas_checkpoint(config, args.checkpoint, args.output)
    fresh = f", {len(summary.fresh)} of them fresh (not trained when saved)" if summary.fresh else ""
    print(f"epoch {summary.epoch}: {summary.accumulators} optimizer entries{fresh}; wrote "
          f"{', '.join(summary.files)}")


def main(argv=None) -> int:
    parser = build_parser("Write a ppfreeze checkpoint in PaddleClas's layout (Global.checkpoints of PaddleClas).")
    parser.add_argument("--checkpoint", required=True, help="ppfreeze checkpoint prefix, e.g. output/ResNet50/latest")
    parser.add_argument("--output", required=True, help="prefix to write, e.g. pc_output/ResNet50/latest")
    return run_tool(parser, export, argv)


if __name__ == "__main__":
    sys.exit(main())
