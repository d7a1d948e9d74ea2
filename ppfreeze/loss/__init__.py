"""Losses: registry, CELoss, SoftTargetCrossEntropy, triplet, contrastive, hashing, multi-label, GoogLeNet and
distillation losses, the PaddleClas-style weighted combination."""
from .registry import LOSSES
from .celoss import CELoss, logits_of
from .combined import CombinedLoss, build_loss
from . import triplet  # noqa: F401  (registers TripletLoss, TripletLossV2)
from .supcon import SupConLoss
from . import deephash, metric_learning  # noqa: F401  (register the hashing and pair-based losses)
from .multilabel import MultiLabelAsymmetricLoss, MultiLabelLoss
from .soft_target import SoftTargetCrossEntropy
from . import googlenetloss  # noqa: F401  (registers GoogLeNetLoss)
from . import distillation  # noqa: F401  (registers the Distillation* losses)
from . import feature_distillation  # noqa: F401  (registers DistillationPairLoss)

__all__ = ["LOSSES", "CELoss", "CombinedLoss", "SoftTargetCrossEntropy", "build_loss", "logits_of", "MultiLabelLoss",
           "MultiLabelAsymmetricLoss", "SupConLoss"]
