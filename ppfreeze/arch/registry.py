"""Model registry: backbones and full models by name (``Arch.name``)."""
from ..utils.builder import Registry

MODELS = Registry("model")
