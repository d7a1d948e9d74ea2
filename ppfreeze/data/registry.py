"""Data registries: datasets, preprocess ops, batch ops, samplers, post-processing."""
from ..utils.builder import Registry

DATASETS = Registry("dataset")
OPS = Registry("preprocess op")
BATCH_OPS = Registry("batch op")
SAMPLERS = Registry("sampler")
POSTPROCESS = Registry("post-process")
