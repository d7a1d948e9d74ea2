"""Training / evaluation engine (imports paddle)."""
from .engine import Engine, TrainingDiverged

__all__ = ["Engine", "TrainingDiverged"]
