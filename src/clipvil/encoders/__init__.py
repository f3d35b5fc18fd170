"""Image towers → GridFeatures: CLIP (open_clip) and ImageNet (timm) encoders, presets, weights, feature store."""

from clipvil.encoders.images import ImageDecodeError, load_image, to_rgb
from clipvil.encoders.preprocess import PRESETS, Preset, get_preset, prepare
from clipvil.encoders.protocol import Encoder
from clipvil.encoders.registry import WeightsInfo, build_encoder, canonical_name, list_encoders
from clipvil.encoders.weights import WeightsError

__all__ = [
    "PRESETS", "Encoder", "ImageDecodeError", "Preset", "WeightsError", "WeightsInfo", "build_encoder",
    "canonical_name", "get_preset", "list_encoders", "load_image", "prepare", "to_rgb",
]
