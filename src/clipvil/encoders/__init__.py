"""Image towers → GridFeatures: CLIP (open_clip) and ImageNet (timm) encoders, presets, weights."""

from clipvil.encoders.images import (
    DEFAULT_MAX_PIXELS,
    ImageDecodeError,
    ImageTooLargeError,
    load_image,
    to_rgb,
)
from clipvil.encoders.preprocess import PRESETS, RESIZE_MODES, Preset, get_preset, prepare
from clipvil.encoders.protocol import Encoder
from clipvil.encoders.registry import build_encoder, canonical_name, list_encoders, tower_family
from clipvil.encoders.tower import Activation, Tower, WeightsInfo
from clipvil.encoders.weights import WeightsError

__all__ = [
    "DEFAULT_MAX_PIXELS", "PRESETS", "RESIZE_MODES", "Activation", "Encoder", "ImageDecodeError",
    "ImageTooLargeError", "Preset", "Tower", "WeightsError", "WeightsInfo", "build_encoder", "canonical_name",
    "get_preset", "list_encoders", "load_image", "prepare", "to_rgb", "tower_family",
]
