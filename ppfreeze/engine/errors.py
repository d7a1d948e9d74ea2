"""Run-time errors that are reported to the user as one message (no traceback)."""
from __future__ import annotations

from typing import Tuple, Type


def user_facing_errors() -> Tuple[Type[BaseException], ...]:
    """Exceptions whose message is the whole story (divergence, a frozen tensor that moved)."""
    from ..freeze import FrozenTensorChanged
    from .callbacks import RanksDiverged
    from .engine import TrainingDiverged
    return (TrainingDiverged, FrozenTensorChanged, RanksDiverged)
