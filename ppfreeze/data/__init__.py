"""Data: datasets, preprocess ops, samplers, loaders, post-processing.

Importing this package does not import paddle: deploy tools use the preprocess ops and
the post-processes alone. The paddle-backed parts (datasets, samplers, ``build_dataloader``) load on
first access.
"""
from ..utils.lazy import lazy_getattr

from .postprocess import MultiLabelThreshOutput, ScoreOutput, ThreshOutput, Topk
from .attr_postprocess import PersonAttribute, TableAttribute, VehicleAttribute
from .distill_postprocess import DistillationPostProcess
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
    "ICartoonDataset": "dataset",
    "CustomLabelDataset": "dataset",
    "MultiLabelDataset": "multilabel_dataset",
    "Cifar10": "cifar",
    "Cifar100": "cifar",
    "Market1501": "reid_dataset",
    "DukeMTMC": "reid_dataset",
    "VeriWild": "reid_dataset",
    "CompCars": "reid_dataset",
    "MultiScaleDataset": "multi_scale",
    "MultiScaleSampler": "multi_scale",
    "BatchSampler": "sampler",
    "DistributedBatchSampler": "sampler",
    "RASampler": "sampler",
}

__getattr__ = lazy_getattr(__name__, _PADDLE_BACKED)


__all__ = ["Topk", "ThreshOutput",
           "MultiLabelThreshOutput", "ScoreOutput", "PersonAttribute", "VehicleAttribute", "TableAttribute",
           "DistillationPostProcess",
           "create_operators",
           "transform", "BATCH_OPS", "DATASETS", "OPS", "POSTPROCESS", "SAMPLERS", *_PADDLE_BACKED]
