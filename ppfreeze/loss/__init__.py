"""Losses: registry, CELoss and the PaddleClas-style weighted combination."""
from .registry import LOSSES
from .celoss import CELoss, logits_of
from .combined import CombinedLoss, build_loss
from . import triplet  # noqa: F401  (registers TripletLoss, TripletLossV2)
from . import googlenetloss  # noqa: F401  (registers GoogLeNetLoss)

__all__ = ["LOSSES", "CELoss", "CombinedLoss", "build_loss", "logits_of"]
