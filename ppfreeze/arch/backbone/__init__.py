"""Backbones; importing this package registers them in ``MODELS``."""
from . import alexnet, densenet, efficientnet, googlenet, inception_v3, inception_v4, pplcnet, resnet, squeezenet, vgg  # noqa: F401  (registration side effect)
