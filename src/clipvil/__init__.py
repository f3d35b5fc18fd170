"""clipvil: CLIP as the visual encoder of vision-and-language models (CLIP-ViL, ICLR 2022)."""

from clipvil.types import GridFeatures

__version__ = "0.1.0"
__all__ = ["GridFeatures", "__version__"]
