"""Preprocess ops (pure numpy + cv2; no paddle) and the helpers that build and run them."""
from .build import create_operators, transform
from .ops import (CropImage, DecodeImage, NormalizeImage, RandCropImage, RandFlipImage, ResizeImage,
                  ToCHWImage)

__all__ = ["create_operators", "transform", "DecodeImage", "ResizeImage",
           "CropImage", "RandCropImage", "RandFlipImage", "NormalizeImage", "ToCHWImage"]
