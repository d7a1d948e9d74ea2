"""Backbones; importing this package registers them in ``MODELS`` (one module per family)."""
from . import pplcnet  # noqa: F401
from . import res2net  # noqa: F401
from . import resnest  # noqa: F401
from . import resnet  # noqa: F401
from . import resnet_variant  # noqa: F401
from . import resnet_vc  # noqa: F401
from . import resnext  # noqa: F401
from . import resnext101_wsl  # noqa: F401
from . import se_resnet_vd  # noqa: F401
from . import se_resnext  # noqa: F401
from . import wideresnet  # noqa: F401
