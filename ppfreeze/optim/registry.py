"""Optimizer, learning-rate schedule and regularizer registries."""
from ..utils.builder import Registry

OPTIMIZERS = Registry("optimizer")
LR_SCHEDULERS = Registry("lr schedule")
REGULARIZERS = Registry("regularizer")
GRAD_CLIPS = Registry("gradient clip")
