"""Compare ppfreeze models whose PaddleClas forward cannot run with what PaddleClas's own layers
compute along the path its code evidently intends (see the model docstrings).

    SwinTransformer_*_SOLIDER        PaddleClas's stage calls its blocks without their (H, W) and
                                     moves the semantic weight with .cuda(): here its blocks get
                                     their fixed input resolution and .cuda() is a no-op.
    CLIP_large_patch14_224_aesthetic PaddleClas indexes the 2-D CLIP output with three indices:
                                     here its mlp(normalize(fc_head(model.forward_features(x)))).
    MAE_vit_huge_patch14             PaddleClas pools the class token before Head, whose fc_norm
                                     then fails: here its Head reads the normalised token sequence
                                     (its forward_features with return_embed set).

    python tools/dev/check_paddleclas_intent.py --paddleclas ../PaddleClas \
        --models SwinTransformer_tiny_patch4_window7_224_SOLIDER
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_with_paddleclas import manifest_of, paddleclas_models, perturb  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)


def _solider_patches() -> None:
    import paddle
    from ppcls.arch.backbone.legendary_models.swin_transformer import SwinTransformerBlock
    from ppcls.arch.backbone.variant_models import swin_transformer_variant as variant

    def block_forward(self, x, input_dimensions=None):
        return SwinTransformerBlock.forward(self, x, input_dimensions or self.input_resolution)
    variant.SwinTransformerBlock_SOLIDER.forward = block_forward
    paddle.Tensor.cuda = lambda self, *args, **kwargs: self


def intended_forward(name: str, model, x):
    """PaddleClas's layers along the intended path."""
    import paddle.nn.functional as F
    if name.endswith("_SOLIDER"):
        return model(x)
    if name == "CLIP_large_patch14_224_aesthetic":
        return model.mlp(F.normalize(model.fc_head(model.model.forward_features(x)), p=2, axis=-1))
    if name == "MAE_vit_huge_patch14":
        model.return_embed = True  # forward_features then returns the normalised tokens
        return model.head(model.forward_features(x))
    raise ValueError(f"no intended path known for {name}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--paddleclas", required=True)
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--perturb", type=float, default=0.02, metavar="STD")
    args = p.parse_args()
    theirs_zoo = paddleclas_models(os.path.abspath(args.paddleclas))
    _solider_patches()
    import paddle
    from ppfreeze.arch import build_model
    failed = 0
    for name in args.models:
        paddle.seed(0)
        class_num = 1 if name == "CLIP_large_patch14_224_aesthetic" else 1000
        theirs = getattr(theirs_zoo, name)() if class_num == 1 else getattr(theirs_zoo, name)(class_num=class_num)
        ours = build_model({"name": name, "class_num": class_num})
        result = {"model": name, "keys_equal": manifest_of(theirs) == manifest_of(ours)}
        perturb(theirs, args.perturb)
        ours.set_state_dict(theirs.state_dict())
        theirs.eval(), ours.eval()
        x = paddle.to_tensor(np.random.default_rng(0).standard_normal((2, 3, args.size, args.size)).astype("float32"))
        with paddle.no_grad():
            a, b = intended_forward(name, theirs, x).numpy(), ours(x).numpy()
        result.update(shape=list(b.shape), max_abs_diff=float(np.abs(a - b).max()), max_abs=float(np.abs(a).max()))
        ok = (result["keys_equal"] and a.shape == b.shape
              and result["max_abs_diff"] <= 1e-4 * max(1.0, result["max_abs"]))
        failed += not ok
        print(("OK   " if ok else "FAIL ") + json.dumps(result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
