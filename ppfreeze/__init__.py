"""ppfreeze: PaddleClas-style config-driven classification and retrieval training with correct, cheap freezing.

Importing the package does not import paddle, so the pure-numpy parts (preprocess ops,
post-processing) can be used by deploy tools without the training stack.
"""
__version__ = "0.1.0"
