"""Backbones; importing this package registers them in ``MODELS``."""
from . import densenet, efficientnet, pplcnet, resnet, vgg  # noqa: F401  (registration side effect)
