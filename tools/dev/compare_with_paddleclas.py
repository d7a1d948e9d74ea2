"""Compare ppfreeze models with PaddleClas's own model code (a local PaddleClas checkout).

Checks, per model name registered in both: identical state-dict keys and shapes, and identical
eval-mode outputs when PaddleClas's (random) weights are loaded into ours. With --write-manifest
it records PaddleClas's key/shape manifest, which tests/test_zoo.py checks our models against.

    python tools/dev/compare_with_paddleclas.py --paddleclas ../PaddleClas --models ResNet50 MobileNetV3_small_x1_0
    python tools/dev/compare_with_paddleclas.py --paddleclas ../PaddleClas --family mobilenet_v3 \
        --write-manifest tests/manifests/mobilenet_v3.json

PaddleClas is imported from --paddleclas only here (it needs scikit-learn, tqdm, ...; use a venv
that has them). Nothing of it is copied into ppfreeze.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Optional

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)


def paddleclas_models(root: str):
    sys.path.insert(0, root)
    from ppcls.utils import logger
    logger.init_logger()
    import ppcls.arch.backbone as backbone
    return backbone


# PaddleClas factories that do not take ``class_num`` (ours take it, with these defaults)
PADDLECLAS_ARGS = {
    "WideResNet": lambda class_num: {"depth": 28, "widen_factor": 2, "dropout": 0.0, "num_classes": class_num},
}


def paddleclas_args(name: str, class_num: Optional[int]) -> dict:
    """Keyword arguments that build PaddleClas's ``name`` with ``class_num`` classes (None: its own default)."""
    if class_num is None:
        return {}
    return PADDLECLAS_ARGS[name](class_num) if name in PADDLECLAS_ARGS else {"class_num": class_num}


# Names PaddleClas exports whose factory functions raise KeyError (no MODEL_URLS entry):
# built from the model class with the arguments the factory would pass.
BROKEN_FACTORIES = {
    "HRNet_W60_C": ("ppcls.arch.backbone.legendary_models.hrnet", "HRNet", {"width": 60}),
    "SE_HRNet_W64_C": ("ppcls.arch.backbone.legendary_models.hrnet", "HRNet", {"width": 64, "has_se": True}),
}


def factory_of(backbone, name: str):
    """PaddleClas's callable building ``name`` (its model class for the BROKEN_FACTORIES)."""
    if name not in BROKEN_FACTORIES:
        return getattr(backbone, name)
    import functools
    import importlib
    module_name, cls_name, kwargs = BROKEN_FACTORIES[name]
    module = importlib.import_module(module_name)
    stages = getattr(module, "MODEL_STAGES_PATTERN", {}).get(cls_name)
    extra = {"stages_pattern": stages} if stages is not None else {}
    return functools.partial(getattr(module, cls_name), **extra, **kwargs)


def manifest_of(model) -> list:
    return [f"{k} {','.join(str(int(d)) for d in v.shape)}" for k, v in model.state_dict().items()]


def build_theirs(factory, **kwargs):
    """A PaddleClas model; its model_zoo files give parameters fixed names (``conv1_weights``), which
    paddle refuses to create twice in one name scope, so each model gets a fresh scope."""
    import paddle
    with paddle.utils.unique_name.guard():
        return factory(**kwargs)


def build_lazy(factory, lazy: bool = True, **kwargs):
    import paddle
    if not lazy:
        return build_theirs(factory, **kwargs)
    try:
        with paddle.LazyGuard():
            return build_theirs(factory, **kwargs)
    except Exception:  # some PaddleClas initialisers need real tensors
        return build_theirs(factory, **kwargs)


def randomize_weights(model, seed: int = 0) -> None:
    """Give every tensor of ``model`` random values of a sensible scale (BN variances positive).

    Freshly initialised PaddleClas models often output ~0 (zero-initialised gammas, tiny fc
    weights), which makes an output comparison vacuous; random statistics and affine terms
    exercise every path.
    """
    import paddle
    rng = np.random.default_rng(seed)
    for key, tensor in model.state_dict().items():
        shape = [int(d) for d in tensor.shape]
        if not shape or not str(tensor.dtype).endswith(("float32", "float64")):
            continue
        if key.endswith("_variance"):
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) == 1:  # BN/LN scales and shifts, biases
            value = rng.uniform(0.5, 1.5, shape) if key.endswith(("weight", "scale")) else rng.normal(0, 0.1, shape)
        else:
            # Linear weights are [in, out]; convs [out, in/groups, kh, kw]
            fan_in = shape[0] if len(shape) == 2 else int(np.prod(shape[1:]))
            value = rng.normal(0, 1.0 / np.sqrt(max(fan_in, 1)), shape)
        tensor.set_value(paddle.to_tensor(value.astype(str(tensor.dtype).split(".")[-1])))


def perturb(model, std: float) -> None:
    """Add N(0, std) noise to every floating-point tensor of ``model``'s state dict, so that
    parameters initialised to constants (biases, LayerNorm, layer-scale gammas at 0) matter."""
    import paddle
    for value in model.state_dict().values():
        if value.dtype in (paddle.float32, paddle.float64):
            value.set_value(value + paddle.normal(0.0, std, value.shape).astype(value.dtype))


def compare(name: str, theirs_factory, size: int, class_num: Optional[int], check_output: bool,
            extra: Optional[dict] = None, noise: float = 0.0, random_weights: bool = True) -> dict:
    import paddle
    from ppfreeze.arch import build_model
    paddle.seed(0)
    theirs = build_theirs(theirs_factory, **paddleclas_args(name, class_num), **(extra or {}))
    ours = build_model({"name": name, "class_num": class_num, **(extra or {})})
    t, o = manifest_of(theirs), manifest_of(ours)
    result = {"model": name, "keys_equal": t == o, "keys_same_set": sorted(t) == sorted(o)}
    if not result["keys_same_set"]:
        result["only_paddleclas"] = sorted(set(t) - set(o))[:10]
        result["only_ppfreeze"] = sorted(set(o) - set(t))[:10]
        return result
    if check_output:
        if random_weights:  # fresh PaddleClas models often output ~0: compare on random weights
            randomize_weights(theirs)
        if noise:
            perturb(theirs, noise)
        ours.set_state_dict(theirs.state_dict())
        theirs.eval(); ours.eval()
        x = paddle.to_tensor(np.random.default_rng(0).standard_normal((2, 3, size, size)).astype("float32"))
        with paddle.no_grad():
            a, b = theirs(x), ours(x)
        a = a if isinstance(a, paddle.Tensor) else a[list(a)[0]] if isinstance(a, dict) else a[0]
        b = b if isinstance(b, paddle.Tensor) else b[list(b)[0]] if isinstance(b, dict) else b[0]
        result["max_abs_diff"] = float(np.abs(a.numpy() - b.numpy()).max())
        result["max_abs"] = float(np.abs(a.numpy()).max())
    return result


def _class_num(text: str) -> Optional[int]:
    return None if text.lower() in ("none", "null") else int(text)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--paddleclas", required=True, help="path of a PaddleClas checkout")
    p.add_argument("--models", nargs="*", default=[], help="model names (default: every name of --family)")
    p.add_argument("--family", help="ppfreeze module name under ppfreeze/arch/backbone, e.g. mobilenet_v3")
    p.add_argument("--size", type=int, default=224, help="input size for the output comparison")
    p.add_argument("--class-num", type=_class_num, default=1000,
                   help="classifier width (default 1000); 'none' builds PaddleClas's model without class_num "
                        "(its default, e.g. a headless model) and ours with class_num: null")
    p.add_argument("--kwargs", type=json.loads, default={},
                   help='more arguments for both models, as JSON, e.g. \'{"return_embed": true}\'')
    p.add_argument("--perturb", type=float, default=0.0, metavar="STD",
                   help="add N(0, STD) noise to PaddleClas's weights before the output comparison "
                        "(exercises constant-initialised tensors: biases, norms, zero gammas)")
    p.add_argument("--no-output", action="store_true", help="compare keys and shapes only (large models)")
    p.add_argument("--keep-init", action="store_true",
                   help="compare with PaddleClas's initial weights instead of random ones")
    p.add_argument("--no-lazy", action="store_true",
                   help="build PaddleClas's models with real weights for the manifest (needed where an initializer "
                        "decides a shape, as foundation_vit's proj: lazily [C], really [C, 512])")
    p.add_argument("--write-manifest", help="write PaddleClas's key/shape manifest of the models to this JSON file")
    args = p.parse_args()
    theirs = paddleclas_models(os.path.abspath(args.paddleclas))
    from ppfreeze.arch import MODELS
    names = list(args.models)
    if args.family:
        names += [n for n in MODELS.names() if MODELS.get(n).__module__.endswith("." + args.family)]
    names = [n for n in dict.fromkeys(names) if hasattr(theirs, n) or n in BROKEN_FACTORIES]
    if args.write_manifest:
        sha = subprocess.run(["git", "-C", args.paddleclas, "rev-parse", "HEAD"], capture_output=True,
                             text=True).stdout.strip() or "unknown"
        manifest = {"source": f"PaddlePaddle/PaddleClas@{sha[:9]}", "class_num": args.class_num, "models": {}}
        for name in names:
            model = build_lazy(factory_of(theirs, name), lazy=not args.no_lazy, **paddleclas_args(name, args.class_num))
            manifest["models"][name] = manifest_of(model)
            print(f"{name}: {len(manifest['models'][name])} keys", flush=True)
        with open(args.write_manifest, "w") as f:
            json.dump(manifest, f, indent=0)
            f.write("\n")
        return 0
    failed = 0
    for name in names:
        r = compare(name, factory_of(theirs, name), args.size, args.class_num, not args.no_output, args.kwargs,
                    args.perturb, random_weights=not args.keep_init)
        ok = r["keys_equal"] and r.get("max_abs_diff", 0.0) <= 1e-4 * max(1.0, r.get("max_abs", 1.0))
        failed += not ok
        print(("OK   " if ok else "FAIL ") + json.dumps(r), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
