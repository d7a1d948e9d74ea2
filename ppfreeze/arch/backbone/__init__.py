"""Backbones; importing this package registers them in ``MODELS``."""
from . import (pplcnet, res2net, resnet, resnet_variant, resnet_vc, resnext, se_resnet_vd,  # noqa: F401
               se_resnext)  # (registration side effect)
