"""Backbones; importing this package registers them in ``MODELS``."""
from . import (convnext, pphgnet, pphgnet_v2, pplcnet, pplcnet_v2, regnet, repvgg,  # noqa: F401  (registration)
               resnet)
