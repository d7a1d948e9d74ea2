"""Preprocess ops (numpy, OpenCV and Pillow; no paddle) and the helpers that build and run them.

Every op PaddleClas's configs name is registered in ``OPS`` under PaddleClas's name:

- ``ops``: DecodeImage, ResizeImage, CropImage, RandCropImage, RandFlipImage, NormalizeImage, ToCHWImage
- ``geometry``: RandomCropImage, RandCropImageV2, CropImageAtRatio, Pad, Padv2, RandomRot90, RandomRotation
- ``vision`` (paddle.vision's): ToTensor, Normalize, Resize, CenterCrop, RandomResizedCrop,
  RandomHorizontalFlip, RandomCrop, Pad_paddle_vision
- ``color``: ColorJitter, PCALighting, BlurImage, AugMix
- ``erasing``: RandomErasing, Cutout, HideAndSeek, GridMask
- ``autoaugment``: AutoAugment; ``randaugment``: RandAugment, RandAugmentV2/V3/V4;
  ``timm_autoaugment``: TimmAutoAugment
"""
from .build import create_operators, outputs_channel_first, transform
from .ops import (CropImage, DecodeImage, NormalizeImage, RandCropImage, RandFlipImage, ResizeImage,
                  ToCHWImage)
from . import autoaugment, color, erasing, geometry, randaugment, timm_autoaugment, vision  # noqa: F401 (register)

__all__ = ["create_operators", "transform", "outputs_channel_first", "DecodeImage",
           "ResizeImage", "CropImage", "RandCropImage", "RandFlipImage", "NormalizeImage", "ToCHWImage"]
