"""Dygraph prediction with the ``Infer`` section (``tools/infer.py``)."""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Tuple

import numpy as np
import paddle

from ..arch.outputs import primary_output
from ..config.errors import ConfigError
from ..errors import DataIntegrityError
from ..utils.images import batched, list_images, preprocess_images

logger = logging.getLogger("ppfreeze")



def predict(engine) -> List[Dict[str, Any]]:
    """Run ``Infer.transforms`` + model + ``Infer.PostProcess`` over ``Infer.infer_imgs``.

    An image that cannot be used (unreadable, damaged) is named in the log and the others are
    predicted; a DataIntegrityError at the end says how many failed.
    """
    from ..data import POSTPROCESS, create_operators
    infer = engine.config.get("Infer")
    if not infer:
        raise ConfigError("Infer", "missing section", "add Infer: {infer_imgs, batch_size, transforms, PostProcess}")
    ops = create_operators(infer.get("transforms") or [], "Infer.transforms")
    post = POSTPROCESS.build(infer["PostProcess"], "Infer.PostProcess") if infer.get("PostProcess") else None
    engine.model.eval()
    results: List[Dict[str, Any]] = []
    failed: List[Tuple[str, str]] = []
    paths = list_images(infer.get("infer_imgs"))
    for chunk in batched(paths, infer.get("batch_size", 1)):
        arrays, good, bad = preprocess_images(chunk, ops)
        for path, reason in bad:
            logger.error("%s: cannot use this image: %s", path, reason)
        failed.extend(bad)
        if not arrays:
            continue
        with paddle.no_grad():
            out = engine.model(paddle.to_tensor(np.stack(arrays).astype("float32")))
        out = primary_output(out)  # a DistillationModel: its deployed model's output
        if isinstance(out, (list, tuple)):  # GoogLeNet: [logits, aux1, aux2]
            out = out[0]
        if isinstance(out, dict):
            out = out.get("logits", out.get("features"))
        if post is not None:
            results.extend(post(out.numpy(), good))
        else:
            results.extend({"file_name": p, "output": o.tolist()} for p, o in zip(good, out.numpy()))
    for r in results:
        logger.info("%s", r)
    if failed:
        path, reason = failed[0]
        raise DataIntegrityError(path, f"{reason}: {len(failed)} of {len(paths)} images could not be used; the "
                                       f"other {len(results)} were predicted", "the log names every failed image")
    return results
