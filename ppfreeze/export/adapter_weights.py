"""Save the tensors a Freeze plan trains (PEFT adapters, the head, unfrozen blocks) as their own
small ``.pdparams`` file, and load such a file onto the same base model.

The file holds full-model keys (``blocks.0.attn.qkv.lora_A``, ``head.weight``): loaded on top of
the base weights, with the same ``Arch`` and ``Freeze`` sections, it gives back the fine-tuned
model exactly. Everything else (the frozen base) is left out, which is what makes it small.
"""
from __future__ import annotations

from typing import Any, List

import paddle.nn as nn

from ..arch.pretrained import LoadReport, load_pretrained
from ..config.errors import ConfigError
from ..utils.io import atomic_paddle_save


def save_trained_tensors(model: nn.Layer, plan: Any, output: str) -> List[str]:
    """Write the tensors ``plan`` trains (``plan.trained_tensor_names``) to ``output``; returns their names."""
    names = plan.trained_tensor_names(model)
    if not names:
        raise ConfigError("Freeze", "the plan trains nothing, so there is nothing to save")
    state = model.state_dict()
    atomic_paddle_save({n: state[n] for n in names}, output)
    return names


def load_trained_tensors(model: nn.Layer, plan: Any, path: str, key: str = "--load-adapters") -> LoadReport:
    """Load a file written by :func:`save_trained_tensors` onto ``model`` (the base weights already in).

    It must hold exactly the tensors ``plan`` trains, with the model's shapes: a file saved with
    another ``Arch`` or ``Freeze`` section is refused rather than half-loaded.
    """
    expected = set(plan.trained_tensor_names(model))
    report = load_pretrained(model, path, key)
    wrong = sorted(set(report.unexpected) | {n for n, _, _ in report.mismatched})
    absent = sorted(expected - set(report.loaded))
    if wrong or absent:
        parts = ([f"tensors the model does not have or with other shapes: {wrong[:5]}"] if wrong else []) + \
                ([f"tensors the plan trains but the file lacks: {absent[:5]}"] if absent else [])
        raise ConfigError(key, f"{path} does not fit this model and Freeze plan: {'; '.join(parts)}",
                          "load it with the Arch and Freeze sections it was trained with")
    return report
