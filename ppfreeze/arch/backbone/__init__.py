"""Backbones; importing this package registers them in ``MODELS``."""
from . import efficientnet, pplcnet, resnet, vgg  # noqa: F401  (registration side effect)
