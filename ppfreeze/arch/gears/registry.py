"""Gear registry: the necks and heads a ``RecModel`` builds from ``Arch.Neck`` / ``Arch.Head``."""
from ...utils.builder import Registry

GEARS = Registry("neck/head")
