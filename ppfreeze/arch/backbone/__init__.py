"""Backbones; importing this package registers them in ``MODELS``."""
from . import (  # noqa: F401  (registration side effect)
    convnext, esnet, ghostnet, mobilenet_v1, mobilenet_v2, mobilenet_v3, mobilenet_v4, pphgnet, pphgnet_v2, pplcnet,
    pplcnet_v2, regnet, repvgg, resnet, shufflenet_v2)
