"""Compare ppfreeze's metric-learning, contrastive and hashing losses with PaddleClas's own classes.

Same random features and labels (P x K batches) go to both; prints the loss of each and the
largest gradient difference with respect to the features. Run with a Python that imports PaddleClas:

    /work/pcenv/bin/python tools/dev/compare_losses_with_paddleclas.py --paddleclas /work/pc

Nothing of PaddleClas is copied into ppfreeze; it is imported from --paddleclas only here.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)

TOL = 1e-5


def _run(loss: Callable, feats: np.ndarray, labels: np.ndarray, extra: Dict[str, np.ndarray], key: str,
         label_shape: Tuple[int, ...]) -> Tuple[float, np.ndarray]:
    import paddle
    x = paddle.to_tensor(feats)
    x.stop_gradient = False
    output = {key: x, **{k: paddle.to_tensor(v) for k, v in extra.items()}}
    value = loss(output, paddle.to_tensor(labels.reshape(label_shape)))
    value = next(iter(value.values())) if isinstance(value, dict) else value
    value.backward()
    return float(value), x.grad.numpy()


def cases() -> List[Tuple[str, Any, Any, str, Dict[str, Any]]]:
    """(name, PaddleClas class, ppfreeze name, feature key, kwargs)."""
    import ppcls.loss.contrasiveloss as contrastive
    import ppcls.loss.deephashloss as deephash
    from ppcls.loss.pairwisecosface import PairwiseCosface
    from ppcls.loss.tripletangularmarginloss import TripletAngularMarginLoss
    tam = {"margin": 0.5, "add_absolute": True, "absolute_loss_weight": 0.1, "ap_value": 0.8, "an_value": 0.4}
    return [("TripletAngularMarginLoss", TripletAngularMarginLoss, "features", {}),
            ("TripletAngularMarginLoss", TripletAngularMarginLoss, "features", tam),
            ("PairwiseCosface", PairwiseCosface, "features", {"margin": 0.35, "gamma": 64}),
            ("ContrastiveLoss", contrastive.ContrastiveLoss, "features", {"margin": 0.5, "embedding_size": 8}),
            ("ContrastiveLoss_XBM", contrastive.ContrastiveLoss_XBM, "features",
             {"xbm_size": 20, "xbm_weight": 1.0, "start_iter": 1, "margin": 0.5, "embedding_size": 8}),
            ("DCHLoss", deephash.DCHLoss, "features", {"gamma": 20.0, "_lambda": 0.1, "n_class": 4}),
            ("DSHSDLoss", deephash.DSHSDLoss, "features", {"alpha": 0.05}),
            ("LCDSHLoss", deephash.LCDSHLoss, "features", {"n_class": 4, "_lambda": 3.0})]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paddleclas", required=True, help="PaddleClas checkout")
    args = parser.parse_args()
    sys.path.insert(0, args.paddleclas)
    from ppcls.utils import logger
    logger.init_logger()
    from ppfreeze.loss import LOSSES
    rng = np.random.default_rng(0)
    failed = 0
    for name, theirs_cls, key, kwargs in cases():
        theirs, ours = theirs_cls(**kwargs), LOSSES.build({name: dict(kwargs)})
        for step in range(3):   # several steps: the XBM memory fills
            # 4 distinct identities x 2 images (a P x K batch: PaddleClas's TripletAngularMarginLoss
            # reshapes the selected pairs row by row and needs as many positives in every row)
            labels = np.repeat(rng.permutation(4), 2).astype("int64")
            feats = np.tanh(rng.normal(size=(8, 8))).astype("float32")
            extra = {"logits": rng.normal(size=(8, 4)).astype("float32")}
            # PaddleClas's ContrastiveLoss compares [N, 1] labels wrongly; both get [N] labels
            shape = (-1,) if name.startswith("Contrastive") else (-1, 1)
            t_val, t_grad = _run(theirs, feats, labels, extra, key, shape)
            o_val, o_grad = _run(ours, feats, labels, extra, key, shape)
            ok = abs(t_val - o_val) <= TOL * max(1.0, abs(t_val)) and np.abs(t_grad - o_grad).max() <= TOL
            failed += not ok
            print(f"{'OK  ' if ok else 'DIFF'} {name}{kwargs if kwargs else ''} step {step}: PaddleClas {t_val:.6f} "
                  f"ppfreeze {o_val:.6f} max|grad diff| {np.abs(t_grad - o_grad).max():.2e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
