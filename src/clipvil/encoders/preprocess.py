"""The paper's input presets: how an RGB image becomes a normalised tensor (and which pixels are real).

| preset   | what happens                                                                   | paper use        |
|----------|--------------------------------------------------------------------------------|------------------|
| vqa      | resize to exactly 600×1000 (H×W), aspect ratio not kept → 18×31 at stride 32    | VQA (Direct)     |
| caption  | resize to exactly 448×448 → 14×14 at stride 32                                  | captioning       |
| pretrain | shorter side 384, longer ≤ 640, zero-padded to 384×640 (or 640×384 if portrait) | CLIP-ViL_p       |
| views    | resize shorter side to 224, center crop 224×224                                 | VLN views        |
| native   | resize shorter side to the model's own input size, center crop (CLIP's own)     | zero-shot, probes|

Resizing is bicubic with antialiasing (PIL), as CLIP's own preprocessing. Zero padding is applied after
normalisation, and the padded cells are reported so encoders can mask them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from PIL import Image
from torchvision.transforms import functional as TF

Mode = Literal["resize", "crop", "pad"]


@dataclass(frozen=True)
class Preset:
    """An input recipe."""

    name: str  # the preset's name on the command line
    mode: Mode  # resize: exact size; crop: shorter side then center crop; pad: fit inside, zero-pad
    size: tuple[int, int] | None  # (H, W) output; None = the model's native square size
    max_long: int | None = None  # pad mode: the longer side is at most this


PRESETS: dict[str, Preset] = {
    "vqa": Preset("vqa", "resize", (600, 1000)),
    "caption": Preset("caption", "resize", (448, 448)),
    "pretrain": Preset("pretrain", "pad", (384, 640), max_long=640),
    "views": Preset("views", "crop", (224, 224)),
    "native": Preset("native", "crop", None),
}


def get_preset(name: str) -> Preset:
    """The preset called `name`; a clear error lists the known ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]


@dataclass(frozen=True)
class Prepared:
    """One preprocessed image."""

    pixels: torch.Tensor  # [3, H, W] normalised
    content_hw: tuple[int, int]  # height and width of the real (unpadded) pixels, from the top-left corner


def output_size(preset: Preset, image_hw: tuple[int, int], native: int) -> tuple[int, int]:
    """The (H, W) of the tensor the preset makes from an image of size `image_hw` (H, W)."""
    if preset.size is None:
        return (native, native)
    if preset.mode == "pad":
        short, long_ = preset.size[0], preset.size[1]
        return (short, long_) if image_hw[1] >= image_hw[0] else (long_, short)
    return preset.size


def _fit_inside(hw: tuple[int, int], short: int, max_long: int) -> tuple[int, int]:
    """Scales (h, w) so the shorter side is `short` unless that makes the longer side exceed `max_long`."""
    h, w = hw
    scale = min(short / min(h, w), max_long / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def prepare(
    img: Image.Image, preset: Preset, mean: tuple[float, ...], std: tuple[float, ...], native: int = 224
) -> Prepared:
    """Applies `preset` to an RGB PIL image and normalises it with `mean`/`std` (per channel, 0..1 scale)."""
    image_hw = (img.height, img.width)
    out_h, out_w = output_size(preset, image_hw, native)
    if preset.mode == "resize":
        img = img.resize((out_w, out_h), Image.BICUBIC)
    elif preset.mode == "crop":
        scale = out_h / min(image_hw)
        new_h, new_w = max(out_h, round(image_hw[0] * scale)), max(out_w, round(image_hw[1] * scale))
        img = img.resize((new_w, new_h), Image.BICUBIC)
        img = TF.center_crop(img, [out_h, out_w])
    if preset.mode != "pad":
        pixels = TF.normalize(TF.to_tensor(img), mean, std)  # [3, H, W]
        return Prepared(pixels, (out_h, out_w))
    assert preset.size is not None and preset.max_long is not None
    new_h, new_w = _fit_inside(image_hw, preset.size[0], preset.max_long)
    content = TF.normalize(TF.to_tensor(img.resize((new_w, new_h), Image.BICUBIC)), mean, std)  # [3, h, w]
    pixels = torch.zeros(3, out_h, out_w, dtype=content.dtype)  # [3, H, W]
    pixels[:, :new_h, :new_w] = content
    return Prepared(pixels, (new_h, new_w))


def grid_mask(content_hw: tuple[int, int], grid_hw: tuple[int, int], stride: int) -> torch.Tensor:
    """[h*w] bool: a grid cell is valid when its receptive square overlaps real pixels."""
    rows = min(grid_hw[0], -(-content_hw[0] // stride))
    cols = min(grid_hw[1], -(-content_hw[1] // stride))
    mask = torch.zeros(grid_hw, dtype=torch.bool)  # [h, w]
    mask[:rows, :cols] = True
    return mask.flatten()  # [h*w]
