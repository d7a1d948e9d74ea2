"""Data: datasets, preprocess ops, samplers, loaders, post-processing, the demo dataset.

Importing this package does not import paddle: deploy tools use the preprocess ops and
``Topk`` alone. The paddle-backed parts (datasets, samplers, ``build_dataloader``) load on
first access.
"""
from ..utils.lazy import lazy_getattr

from .demo import DEMO_ROOT_NAME, ensure_demo_data, make_demo_dataset
from .postprocess import Topk
from .preprocess import create_operators, transform
from .registry import BATCH_OPS, DATASETS, OPS, POSTPROCESS, SAMPLERS
from . import pk_sampler  # noqa: F401  (registers PKSampler / DistributedRandomIdentitySampler; numpy only)
from . import batch_ops  # noqa: F401  (registers the mixup / cutmix batch ops; numpy only)

# name -> submodule, imported on first attribute access (PEP 562) because they import paddle.
_PADDLE_BACKED = {
    "build_dataloader": "loader",
    "set_loader_epoch": "loader",
    "batch_ops_of": "loader",
    "EpochSeededDataset": "loader",
    "ImageNetDataset": "dataset",
    "CustomLabelDataset": "dataset",
    "BatchSampler": "sampler",
    "DistributedBatchSampler": "sampler",
}

__getattr__ = lazy_getattr(__name__, _PADDLE_BACKED)


__all__ = ["DEMO_ROOT_NAME", "ensure_demo_data", "make_demo_dataset", "Topk", "create_operators",
           "transform", "BATCH_OPS", "DATASETS", "OPS", "POSTPROCESS", "SAMPLERS", *_PADDLE_BACKED]
