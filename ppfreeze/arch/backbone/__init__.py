"""Backbones; importing this package registers them in ``MODELS``."""
from . import (deit, foundation_vit, pplcnet, resnet, swin_transformer,  # noqa: F401  (registration side effect)
               vision_transformer)
