"""Compare the parameter names Paddle generates for PaddleClas's models and for ours.

PaddleClas keys optimizer state by ``param.name`` (``conv2d_0.w_0_velocity_0``), a name Paddle
generates from the order in which layers are created (or a fixed name some PaddleClas model
files set, ``conv1_weights``). ``tools/convert_checkpoint.py --to paddleclas`` gives our
parameters the names a fresh PaddleClas process gives its own, by building our model in a fresh
name scope; that is right only where both create their parameters in the same order. This
script checks it per model (run with PaddleClas's venv):

    /work/pcenv/bin/python tools/dev/check_paddleclas_param_names.py --paddleclas /work/pc
    /work/pcenv/bin/python tools/dev/check_paddleclas_param_names.py --paddleclas /work/pc --family resnet

Each line: ``same`` (every state-dict key gets the same generated name), ``renamed`` (the same
after renaming a layer-class prefix, e.g. PaddleClas's ``nn.BatchNorm`` -> ``batch_norm_3``
where our ``BatchNorm2D`` gives ``batch_norm2d_3``), ``fixed`` (PaddleClas
names some parameters itself), ``order`` (generated names, created in another order), with the
first differing key. The summary lists the families (modules) where every model is ``same`` or
``renamed`` with one prefix map: ``ppfreeze.engine.paddleclas_ckpt.PADDLECLAS_NAME_PREFIXES``
holds those families (with their map) and no other.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_with_paddleclas import BROKEN_FACTORIES, ROOT, factory_of, paddleclas_args, paddleclas_models  # noqa: E402

sys.path.insert(0, ROOT)

_GENERATED = re.compile(r"^([a-z0-9_]+)(_\d+\.[wb]_\d+)$")


def generated_names(build) -> dict:
    """``{state-dict key: param.name}`` of the model ``build()`` makes in a fresh name scope."""
    import paddle
    with paddle.utils.unique_name.guard():
        try:
            with paddle.LazyGuard():
                model = build()
        except Exception:  # some initialisers need real tensors
            model = build()
    return {k: p.name for k, p in model.named_parameters()}


def classify(theirs: dict, ours: dict) -> tuple:
    """('same' | 'renamed' | 'fixed' | 'order' | 'keys', detail, {our layer prefix: PaddleClas's}).

    ``renamed``: the same creation order, but PaddleClas uses another Paddle layer class for
    some layers (``nn.BatchNorm``: ``batch_norm_3.w_0`` where ours is ``batch_norm2d_3.w_0``),
    so a one-to-one prefix map turns our names into PaddleClas's.
    """
    if list(theirs) != list(ours):
        return "keys", next((k for k in theirs if k not in ours), ""), {}
    fixed = [k for k, v in theirs.items() if not _GENERATED.match(v)]
    if fixed:
        return "fixed", f"{fixed[0]} -> {theirs[fixed[0]]}", {}
    renames, back = {}, {}
    for k in theirs:
        (tp, ts), (op, os_) = _GENERATED.match(theirs[k]).groups(), _GENERATED.match(ours[k]).groups()
        if ts != os_ or renames.setdefault(op, tp) != tp or back.setdefault(tp, op) != op:
            return "order", f"{k}: PaddleClas {theirs[k]}, ours {ours[k]}", {}
    renames = {o: t for o, t in renames.items() if o != t}
    return ("renamed" if renames else "same"), "", renames


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--paddleclas", required=True, help="path of a PaddleClas checkout")
    p.add_argument("--family", help="only this ppfreeze module under ppfreeze/arch/backbone, e.g. resnet")
    p.add_argument("--models", nargs="*", default=[], help="only these model names")
    p.add_argument("--json", help="also write the per-model results to this JSON file")
    args = p.parse_args()
    theirs_zoo = paddleclas_models(os.path.abspath(args.paddleclas))
    from ppfreeze.arch import MODELS, build_model
    names = list(args.models) or [n for n in MODELS.names() if MODELS.get(n).__module__.startswith("ppfreeze.arch.backbone")]
    if args.family:
        names = [n for n in names if MODELS.get(n).__module__.endswith("." + args.family)]
    names = [n for n in names if hasattr(theirs_zoo, n) or n in BROKEN_FACTORIES]
    results, families = {}, defaultdict(set)
    for name in names:
        family = MODELS.get(name).__module__.rsplit(".", 1)[-1]
        try:
            theirs = generated_names(lambda: factory_of(theirs_zoo, name)(**paddleclas_args(name, 10)))
            ours = generated_names(lambda: build_model({"name": name, "class_num": 10}))
            verdict, detail, renames = classify(theirs, ours)
        except Exception as e:  # report and go on: one broken factory must not hide the others
            verdict, detail, renames = "error", f"{type(e).__name__}: {e}"[:200], {}
        results[name] = {"family": family, "verdict": verdict, "detail": detail, "renames": renames}
        families[family].add(verdict + json.dumps(renames, sort_keys=True) if verdict == "renamed" else verdict)
        print(f"{verdict:7s} {name:40s} {detail or json.dumps(renames)}", flush=True)
    same = sorted(f for f, v in families.items() if len(v) == 1 and next(iter(v)).startswith(("same", "renamed")))
    print("\nfamilies where every model gets PaddleClas's generated names (with one prefix map):")
    for f in same:
        print(f"  {f}: {next(iter(families[f]))}")
    print("other families:", ", ".join(f"{f} ({'/'.join(sorted(v))})" for f, v in sorted(families.items())
                                       if f not in same))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"models": results, "same_families": same}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
