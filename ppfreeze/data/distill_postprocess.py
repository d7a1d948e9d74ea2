"""``DistillationPostProcess``: post-process one model's part of a ``DistillationModel``'s output
(pure numpy, like the other post-processes)."""
from __future__ import annotations

from typing import Any, List, Optional, Sequence

from ..config.errors import ConfigError
from .registry import POSTPROCESS


@POSTPROCESS.register
class DistillationPostProcess:
    """Pick ``model_name`` (and ``key``) from a dict of model outputs, then run ``func`` on it.

    ``tools/infer.py`` and exported models already hand post-processing the output of the deployed
    model (``Arch.infer_model_name``): an input that is not a dict of models is passed to ``func``
    as it is, so PaddleClas configs naming this post-process work in both places.

    Args:
        model_name: the model whose output is post-processed.
        key: the entry of that model's dict output (default: the output itself).
        func: the post-process to run (a registered name such as ``Topk``); other keyword
            arguments are its arguments.
    """

    def __init__(self, model_name: str = "Student", key: Optional[str] = None, func: str = "Topk", **kwargs: Any):
        if func == "DistillationPostProcess":
            raise ConfigError("func", "DistillationPostProcess cannot wrap itself", "e.g. func: Topk")
        self.model_name = model_name
        self.key = key
        self.func = POSTPROCESS.build({func: kwargs}, "func")

    def __call__(self, x: Any, file_names: Optional[Sequence[str]] = None) -> List[dict]:
        if isinstance(x, dict) and self.model_name in x:
            x = x[self.model_name]
        if self.key is not None and isinstance(x, dict):
            x = x[self.key]
        return self.func(x, file_names)
