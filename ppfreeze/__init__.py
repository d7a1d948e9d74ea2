"""ppfreeze: PaddleClas-style config-driven classification and retrieval training with correct, cheap freezing.

Importing the package does not import paddle, so the pure-numpy parts (preprocess ops,
post-processing) can be used by deploy tools without the training stack.
"""
__version__ = "0.1.0"

# Before anything imports paddle: remember the user's OMP_NUM_THREADS (paddle overwrites it).
from . import runtime_env as _runtime_env  # noqa: E402,F401
