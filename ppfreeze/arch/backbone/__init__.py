"""Backbones; importing this package registers them in ``MODELS``."""
from . import (  # noqa: F401  (registration side effect)
    alexnet,
    densenet,
    dla,
    dpn,
    efficientnet,
    googlenet,
    hrnet,
    inception_v3,
    inception_v4,
    pplcnet,
    resnet,
    squeezenet,
    vgg,
    xception,
    xception_deeplab,
)
