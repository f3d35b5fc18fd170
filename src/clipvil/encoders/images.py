"""Decoding image files into RGB with PIL, the way a viewer shows them.

EXIF orientation is applied; grayscale, CMYK, palette, alpha and 16-bit images all become 8-bit RGB:
transparent pixels are composited over white; 16-bit and 32-bit integer images are scaled to 0..255
(a plain ``convert("RGB")`` would clip them to white).

Images over ``max_pixels`` (width × height, read from the header before anything is decoded) are refused with
an ``ImageTooLargeError`` naming the pixel count and the limit; PIL's own decompression-bomb check (a raw
warning above its limit, an error above twice it) is replaced by this one.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 89_478_485  # PIL's own default limit (about 9459 x 9459), 268 MB as 8-bit RGB
_PIL_LIMIT_LOCK = threading.Lock()  # PIL's limit is a module global: swap it for one header read at a time


class ImageDecodeError(ValueError):
    """An image file could not be read; the message names the file and the reason."""


class ImageTooLargeError(ImageDecodeError):
    """An image has more pixels than allowed (a decompression bomb, or just too big to decode safely)."""

    def __init__(self, path: Path, pixels: int, limit: int) -> None:
        super().__init__(f"{path}: image too large ({pixels} pixels > the limit of {limit}; raise max_pixels "
                         f"(--max-pixels) to allow it)")
        self.path, self.pixels, self.limit = path, pixels, limit

    def __reduce__(self) -> tuple[type, tuple[Path, int, int]]:  # picklable across DataLoader workers
        return (ImageTooLargeError, (self.path, self.pixels, self.limit))


_WIDE_INTEGER_MODES = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0}


def _wide_to_8bit(img: Image.Image) -> Image.Image:
    """16/32-bit single-channel images → 8-bit "L", scaled by the mode's range (not clipped)."""
    arr = np.asarray(img, dtype=np.float64)
    if img.mode in _WIDE_INTEGER_MODES:
        top = _WIDE_INTEGER_MODES[img.mode]
    elif img.mode == "I":  # 32-bit signed container; PNG 16-bit grayscale often decodes to it
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
    else:  # "F": float images are taken as 0..1 when they fit, else 0..255
        top = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
    arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, mode="L")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL image → 8-bit RGB, honouring EXIF orientation and transparency."""
    img = ImageOps.exif_transpose(img)
    if img.mode in _WIDE_INTEGER_MODES or img.mode in ("I", "F"):
        img = _wide_to_8bit(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB") if img.mode != "RGB" else img


def _open_header(path: Path) -> Image.Image:
    """Image.open (reads the header only) without PIL's decompression-bomb check; ours follows."""
    with _PIL_LIMIT_LOCK:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def load_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Reads an image file fully and returns it as RGB; raises ImageDecodeError naming the file (its subclass
    ImageTooLargeError when width x height exceeds `max_pixels`, checked before decoding)."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise ImageDecodeError(f"{path}: broken symbolic link (its target {os.readlink(path)} does not exist)")
    if not path.is_file():
        raise ImageDecodeError(f"{path}: missing file")
    try:
        with _open_header(path) as img:
            pixels = img.width * img.height
            if pixels > max_pixels:
                raise ImageTooLargeError(path, pixels, max_pixels)
            img.load()  # decode now: a truncated file fails here, not later
            return to_rgb(img)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{path}: not an image (PIL cannot identify the format)") from None
    except Image.DecompressionBombError as err:  # a later frame (GIF) larger than PIL's own limit
        raise ImageDecodeError(f"{path}: image too large ({err})") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageDecodeError(f"{path}: corrupt or truncated image ({err})") from None
