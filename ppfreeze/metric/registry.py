"""Metric registry (``Metric.Train`` / ``Metric.Eval`` entries)."""
from ..utils.builder import Registry

METRICS = Registry("metric")
