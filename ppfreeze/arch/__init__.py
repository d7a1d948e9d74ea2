"""Models: the ``MODELS`` registry, the model contract and ``build_model`` for the ``Arch`` section."""
from . import backbone  # noqa: F401  (registers the backbones)
from . import recmodel  # noqa: F401  (registers RecModel and its gears)
from . import distillation  # noqa: F401  (registers DistillationModel)
from .base import ArchModel, contract_violations, model_attr
from .build import build_model
from .outputs import ModelOutputs, primary_output
from .pretrained import LoadReport, load_pretrained
from .registry import MODELS

__all__ = ["MODELS", "ArchModel", "build_model", "contract_violations", "load_pretrained", "LoadReport", "model_attr",
           "ModelOutputs", "primary_output"]
