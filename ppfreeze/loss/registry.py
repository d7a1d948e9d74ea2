"""Loss registry (``Loss.Train`` / ``Loss.Eval`` entries)."""
from ..utils.builder import Registry

LOSSES = Registry("loss")
