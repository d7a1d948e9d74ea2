"""Which of PaddleClas's distillation configs ppfreeze builds: Arch, Loss.Train/Eval, Metric, PostProcess.

Reads every config under ``<paddleclas>/ppcls/configs`` whose Arch is a DistillationModel and
builds its model (shapes only, ``paddle.LazyGuard``), losses, metrics and post-process with
ppfreeze. ``pretrained: true`` (a download) is turned into false first; everything else is as
PaddleClas wrote it. Prints one line per config: OK, or the first error.

    python tools/dev/check_paddleclas_distill_configs.py --paddleclas /work/pc
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)


def _no_downloads(node):
    if isinstance(node, dict):
        return {k: (False if k == "pretrained" and v is True else _no_downloads(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_no_downloads(v) for v in node]
    return node


def check(path: str) -> str:
    import paddle
    from ppfreeze.arch import build_model
    from ppfreeze.config.loader import load_config
    from ppfreeze.data import POSTPROCESS
    from ppfreeze.loss import build_loss
    from ppfreeze.metric import build_metrics
    try:
        cfg = _no_downloads(load_config(path))
        with paddle.LazyGuard():
            build_model(cfg["Arch"], class_num=cfg["Global"].get("class_num"))
        build_loss(cfg["Loss"]["Train"], "Loss.Train")
        build_loss((cfg["Loss"] or {}).get("Eval"), "Loss.Eval", required=False)
        for split in ("Train", "Eval"):
            metrics = (cfg.get("Metric") or {}).get(split)
            if split == "Eval" and cfg["Global"].get("eval_mode") == "retrieval":
                from ppfreeze.retrieval.evaluation import build_retrieval_metrics
                build_retrieval_metrics(metrics, "Metric.Eval")
            else:
                build_metrics(metrics, f"Metric.{split}")
        post = (cfg.get("Infer") or {}).get("PostProcess")
        if post and "class_id_map_file" not in post:
            POSTPROCESS.build(post, "Infer.PostProcess")
        return "OK"
    except Exception as e:  # a report, not a program: show every failure
        if "weights file not found" in str(e):  # a placeholder path the user fills in
            return f"OK once its weights file exists ({str(e).split(':')[0]})"
        return f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paddleclas", required=True)
    args = parser.parse_args()
    paths = sorted(p for p in glob.glob(os.path.join(args.paddleclas, "ppcls", "configs", "**", "*.yaml"), recursive=True)
                   if "DistillationModel" in open(p, encoding="utf-8").read())
    import logging
    logging.getLogger("ppfreeze").setLevel(logging.ERROR)
    ok = 0
    for path in paths:
        status = check(path)
        ok += status == "OK"
        print(f"{os.path.relpath(path, os.path.join(args.paddleclas, 'ppcls', 'configs')):<70} {status}")
    print(f"{ok}/{len(paths)} build")
    return 0


if __name__ == "__main__":
    sys.exit(main())
