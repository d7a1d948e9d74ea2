"""``ModelOutputs``: the output of a model that runs several models side by side.

A ``DistillationModel`` returns ``{"Teacher": ..., "Student": ...}``. Distillation losses and
metrics read it by model name (``model_name_pairs``, ``model_names``, ``model_key``); every
other consumer (``CELoss``, ``TopkAcc``, retrieval evaluation, prediction) works on the output
of the model that is deployed (``infer_model_name``), as PaddleClas's evaluation and prediction
do with ``out["Student"]``. This module imports nothing heavy: losses and metrics use it too.
"""
from __future__ import annotations

from typing import Any, Optional


class ModelOutputs(dict):
    """``{model name: that model's output}`` plus ``primary``: the name of the deployed model."""

    def __init__(self, *args: Any, primary: Optional[str] = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.primary = primary


def primary_output(output: Any) -> Any:
    """The deployed model's part of a :class:`ModelOutputs` (nested ones too); anything else as it is."""
    while isinstance(output, ModelOutputs) and output.primary in output:
        output = output[output.primary]
    return output
