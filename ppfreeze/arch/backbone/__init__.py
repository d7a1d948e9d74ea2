"""Backbones; importing this package registers them in ``MODELS``."""
from . import (  # noqa: F401  (registration side effect)
    esnet, ghostnet, mobilenet_v1, mobilenet_v2, mobilenet_v3, mobilenet_v4, pplcnet, resnet, shufflenet_v2)
