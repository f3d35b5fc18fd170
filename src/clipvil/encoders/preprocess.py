"""The paper's input presets: how an RGB image becomes a normalised tensor (and which pixels are real).

| preset   | what happens                                                                   | paper use        |
|----------|--------------------------------------------------------------------------------|------------------|
| vqa      | to exactly 600×1000 (H×W), ratio not kept (official) → 18×31 at stride 32       | VQA (Direct)     |
| caption  | resize to exactly 448×448 → 14×14 at stride 32                                  | captioning       |
| pretrain | shorter side 384, longer ≤ 640, zero-padded to 384×640 (or 640×384 if portrait) | CLIP-ViL_p       |
| views    | resize shorter side to 224, center crop 224×224                                 | VLN views        |
| native   | resize shorter side to the model's own input size, center crop (CLIP's own)     | zero-shot, probes|

How a fixed-size preset reaches its size (`Preset.resize`, recorded in the store's provenance):

- ``official`` (the vqa default): what CLIP-ViL's VQA extraction did through its detectron2 mapper — resize the
  shortest edge to min(H, W) = 600 with the longest capped at max(H, W) = 1000 (``ResizeShortestEdge``), then
  force the result to exactly H×W = 600×1000 (``Resize``), both PIL bilinear;
- ``direct-bicubic`` (every other fixed-size preset): one PIL bicubic resize straight to H×W.

Crop and pad presets resize bicubic with antialiasing (PIL), as CLIP's own preprocessing. Zero padding is
applied after normalisation, and the padded cells are reported so encoders can mask them out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from PIL import Image
from torchvision.transforms import functional as TF

Mode = Literal["resize", "crop", "pad"]
RESIZE_MODES = ("official", "direct-bicubic")


@dataclass(frozen=True)
class Preset:
    """An input recipe."""

    name: str  # the preset's name on the command line
    mode: Mode  # resize: exact size; crop: shorter side then center crop; pad: fit inside, zero-pad
    size: tuple[int, int] | None  # (H, W) output; None = the model's native square size
    max_long: int | None = None  # pad mode: the longer side is at most this
    resize: str = "direct-bicubic"  # resize mode: how a fixed size is reached (one of RESIZE_MODES)


PRESETS: dict[str, Preset] = {
    "vqa": Preset("vqa", "resize", (600, 1000), resize="official"),
    "caption": Preset("caption", "resize", (448, 448)),
    "pretrain": Preset("pretrain", "pad", (384, 640), max_long=640),
    "views": Preset("views", "crop", (224, 224)),
    "native": Preset("native", "crop", None),
}


def get_preset(name: str, resize: str | None = None) -> Preset:
    """The preset called `name`, with its resize mode replaced by `resize` when given (fixed-size presets only);
    a clear error lists the known presets and modes."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    preset = PRESETS[name]
    if resize is None or resize == preset.resize:
        return preset
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize (--resize): unknown mode {resize!r}; known modes: {', '.join(RESIZE_MODES)}")
    if preset.mode != "resize":
        raise ValueError(f"resize (--resize) applies to the fixed-size presets "
                         f"({', '.join(n for n, p in PRESETS.items() if p.mode == 'resize')}), not to {name!r}")
    return replace(preset, resize=resize)


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


def fit_inside(hw: tuple[int, int], short: int, max_long: int) -> tuple[int, int]:
    """Scales (h, w) so the shorter side is `short` unless that makes the longer side exceed `max_long`."""
    h, w = hw
    scale = min(short / min(h, w), max_long / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def shortest_edge_size(hw: tuple[int, int], short: int, max_long: int) -> tuple[int, int]:
    """detectron2's ResizeShortestEdge output (H, W): shorter side `short`, longer side at most `max_long`,
    each rounded half up."""
    h, w = hw
    scale = short / min(h, w)
    new_h, new_w = (short, scale * w) if h < w else (scale * h, short)
    if max(new_h, new_w) > max_long:
        scale = max_long / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


def _fixed_resize(img: Image.Image, preset: Preset, out_hw: tuple[int, int]) -> Image.Image:
    """A fixed-size preset's resize, in the preset's resize mode."""
    out_h, out_w = out_hw
    if preset.resize == "official":
        mid_h, mid_w = shortest_edge_size((img.height, img.width), min(out_hw), max(out_hw))
        img = img.resize((mid_w, mid_h), Image.BILINEAR)
        return img.resize((out_w, out_h), Image.BILINEAR)
    return img.resize((out_w, out_h), Image.BICUBIC)


def prepare(
    img: Image.Image, preset: Preset, mean: tuple[float, ...], std: tuple[float, ...], native: int = 224
) -> Prepared:
    """Applies `preset` to an RGB PIL image and normalises it with `mean`/`std` (per channel, 0..1 scale)."""
    image_hw = (img.height, img.width)
    out_h, out_w = output_size(preset, image_hw, native)
    if preset.mode == "resize":
        img = _fixed_resize(img, preset, (out_h, out_w))
    elif preset.mode == "crop":
        scale = out_h / min(image_hw)
        new_h, new_w = max(out_h, round(image_hw[0] * scale)), max(out_w, round(image_hw[1] * scale))
        img = img.resize((new_w, new_h), Image.BICUBIC)
        img = TF.center_crop(img, [out_h, out_w])
    if preset.mode != "pad":
        pixels = TF.normalize(TF.to_tensor(img), mean, std)  # [3, H, W]
        return Prepared(pixels, (out_h, out_w))
    assert preset.size is not None and preset.max_long is not None
    new_h, new_w = fit_inside(image_hw, preset.size[0], preset.max_long)
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
