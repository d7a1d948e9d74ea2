"""Dygraph prediction with the ``Infer`` section (``tools/infer.py``)."""
from __future__ import annotations

import logging
from typing import Any, Dict, List

import numpy as np
import paddle

from ..arch.outputs import primary_output
from ..config.errors import ConfigError
from ..utils.images import batched, list_images, read_bytes

logger = logging.getLogger("ppfreeze")



def predict(engine) -> List[Dict[str, Any]]:
    """Run ``Infer.transforms`` + model + ``Infer.PostProcess`` over ``Infer.infer_imgs``."""
    from ..data import POSTPROCESS, create_operators, transform
    infer = engine.config.get("Infer")
    if not infer:
        raise ConfigError("Infer", "missing section", "add Infer: {infer_imgs, batch_size, transforms, PostProcess}")
    ops = create_operators(infer.get("transforms") or [], "Infer.transforms")
    post = POSTPROCESS.build(infer["PostProcess"], "Infer.PostProcess") if infer.get("PostProcess") else None
    engine.model.eval()
    results: List[Dict[str, Any]] = []
    for paths in batched(list_images(infer.get("infer_imgs")), infer.get("batch_size", 1)):
        batch = np.stack([transform(read_bytes(p), ops) for p in paths]).astype("float32")
        with paddle.no_grad():
            out = engine.model(paddle.to_tensor(batch))
        out = primary_output(out)  # a DistillationModel: its deployed model's output
        if isinstance(out, dict):
            out = out.get("logits", out.get("features"))
        if post is not None:
            results.extend(post(out.numpy(), paths))
        else:
            results.extend({"file_name": p, "output": o.tolist()} for p, o in zip(paths, out.numpy()))
    for r in results:
        logger.info("%s", r)
    return results
