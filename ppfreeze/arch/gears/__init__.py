"""Gears: necks (embedding layers) and heads (classifiers, margin heads) of ``RecModel``.

Names and keyword arguments follow PaddleClas's ``ppcls/arch/gears`` (``FC``, ``BNNeck``,
``VehicleNeck``, ``ArcMargin``, ``CosMargin``, ``CircleMargin``, ``MLDecoder``) so its configs build
unchanged.
"""
from .registry import GEARS
from .fc import FC, FRFNNeck, Tanh
from .bnneck import BNNeck
from .margin import ArcMargin, CircleMargin, CosMargin
from .vehicle_neck import VehicleNeck
from .ml_decoder import MLDecoder, add_ml_decoder_head

__all__ = ["GEARS", "FC", "FRFNNeck", "Tanh", "BNNeck", "ArcMargin", "CosMargin", "CircleMargin", "VehicleNeck", "MLDecoder",
           "add_ml_decoder_head"]
