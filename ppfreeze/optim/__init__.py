"""Optimizers, learning-rate schedules, regularizers and gradient clipping."""
from .registry import GRAD_CLIPS, LR_SCHEDULERS, OPTIMIZERS, REGULARIZERS
from .lr import build_lr_scheduler
from .clip import build_grad_clip
from .optimizer import build_optimizer, build_regularizer, exempt_from_decay

__all__ = ["OPTIMIZERS", "LR_SCHEDULERS", "REGULARIZERS", "GRAD_CLIPS", "build_optimizer",
           "build_lr_scheduler", "build_grad_clip", "build_regularizer", "exempt_from_decay"]
