"""Decoding: EXIF orientation, grayscale, CMYK, alpha/palette, 16-bit PNG, and bad files."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipvil.encoders import (
    DEFAULT_MAX_PIXELS,
    ImageDecodeError,
    ImageTooLargeError,
    get_preset,
    load_image,
    prepare,
)
from clipvil.encoders.preprocess import grid_mask


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 20, 20))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "o.jpg", exif=exif, quality=95)
    out = load_image(tmp_path / "o.jpg")
    assert out.size == (20, 40)  # displayed portrait
    top = np.asarray(out)[2, 10]
    assert top[2] > 200 and top[0] < 60  # the blue half is now on top


def test_modes_become_rgb(tmp_path: Path) -> None:
    Image.new("L", (8, 8), 100).save(tmp_path / "g.png")
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (10, 200, 30, 255))
    rgba.save(tmp_path / "a.png")
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 0, 250, 0, 0] + [0] * 762)
    pal.putpixel((1, 1), 1)
    pal.save(tmp_path / "p.png", transparency=0)
    assert np.asarray(load_image(tmp_path / "g.png"))[0, 0].tolist() == [100, 100, 100]
    cmyk = np.asarray(load_image(tmp_path / "c.jpg"))[4, 4]
    assert cmyk[0] > 200 and cmyk[1] < 60 and cmyk[2] < 60  # CMYK (0, M, Y, 0) is red
    a = np.asarray(load_image(tmp_path / "a.png"))
    assert a[0, 0].tolist() == [10, 200, 30] and a[5, 5].tolist() == [255, 255, 255]  # transparent → white
    p = np.asarray(load_image(tmp_path / "p.png"))
    assert p[1, 1].tolist() == [250, 0, 0] and p[0, 0].tolist() == [255, 255, 255]


def test_16bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    arr = np.array([[0, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "d.png")
    with Image.open(tmp_path / "d.png") as raw:
        assert raw.mode.startswith("I")  # PIL keeps 16 bits
    out = np.asarray(load_image(tmp_path / "d.png"))[0, :, 0]
    assert out.tolist() == [0, 128, 255]


def test_bad_files_name_the_file(tmp_path: Path, shared_data: Path) -> None:
    with pytest.raises(ImageDecodeError, match="nope.jpg: missing file"):
        load_image(tmp_path / "nope.jpg")
    (tmp_path / "t.jpg").write_text("hello")
    with pytest.raises(ImageDecodeError, match="t.jpg: not an image"):
        load_image(tmp_path / "t.jpg")
    real = (shared_data / "allennlp-models/images/gqa/n578564.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(real[: len(real) // 3])
    with pytest.raises(ImageDecodeError, match="trunc.jpg: corrupt or truncated"):
        load_image(tmp_path / "trunc.jpg")


CLIP = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


@pytest.mark.parametrize(("preset", "size", "shape"), [
    ("vqa", (333, 500), (600, 1000)), ("caption", (500, 333), (448, 448)), ("views", (480, 640), (224, 224)),
    ("native", (100, 300), (288, 288)),
])
def test_fixed_presets(preset: str, size: tuple[int, int], shape: tuple[int, int]) -> None:
    img = Image.new("RGB", (size[1], size[0]), (128, 0, 255))
    out = prepare(img, get_preset(preset), *CLIP, native=288)
    assert tuple(out.pixels.shape) == (3, *shape) and out.content_hw == shape
    assert torch.allclose(out.pixels[:, 5, 5], torch.tensor([(128 / 255 - 0.5) / 0.25, -2.0, 2.0]), atol=0.02)


def test_pretrain_preset_pads_and_masks() -> None:
    pre = get_preset("pretrain")
    land = prepare(Image.new("RGB", (640, 480), (255, 255, 255)), pre, *CLIP)  # W x H = 640 x 480
    assert tuple(land.pixels.shape) == (3, 384, 640) and land.content_hw == (384, 512)
    assert land.pixels[:, :, 512:].abs().sum() == 0 and land.pixels[:, :, :512].min() > 1.9
    port = prepare(Image.new("RGB", (300, 1200), 0), pre, *CLIP)  # very tall: longer side capped at 640
    assert tuple(port.pixels.shape) == (3, 640, 384) and port.content_hw == (640, 160)
    mask = grid_mask(land.content_hw, (12, 20), 32).view(12, 20)
    assert mask[:, :16].all() and not mask[:, 16:].any()


def test_unknown_preset() -> None:
    with pytest.raises(ValueError, match="unknown preset 'big'.*vqa"):
        get_preset("big")


# --- the vqa preset's official resize: detectron2's ResizeShortestEdge(600, max 1000), then Resize(600x1000) ----

@pytest.mark.parametrize(("size_wh", "mid_wh"), [
    ((500, 333), (901, 600)),  # landscape: short edge 333 → 600, long 500 * 600/333 = 900.9 → 901
    ((300, 1000), (300, 1000)),  # portrait: 600 x 2000 exceeds 1000, scaled by 1/2 to 300 x 1000
    ((1000, 1000), (600, 600)),
])
def test_vqa_official_resize_is_two_bilinear_steps(size_wh: tuple[int, int], mid_wh: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (size_wh[1], size_wh[0], 3), dtype=np.uint8))
    pre = get_preset("vqa")
    assert pre.resize == "official"
    out = prepare(img, pre, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    by_hand = img.resize(mid_wh, Image.BILINEAR).resize((1000, 600), Image.BILINEAR)  # PIL's (W, H)
    expected = torch.from_numpy(np.array(by_hand)).permute(2, 0, 1).float() / 255.0  # [3, 600, 1000]
    assert out.pixels.shape == (3, 600, 1000) and out.content_hw == (600, 1000)
    torch.testing.assert_close(out.pixels, expected)
    single = img.resize((1000, 600), Image.BICUBIC)  # the former (and still optional) one-step resize
    direct = prepare(img, get_preset("vqa", "direct-bicubic"), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    torch.testing.assert_close(direct.pixels, torch.from_numpy(np.array(single)).permute(2, 0, 1).float() / 255.0)
    assert (direct.pixels - out.pixels).abs().max() > 0.01


def test_resize_modes_are_checked() -> None:
    assert get_preset("caption").resize == "direct-bicubic"
    with pytest.raises(ValueError, match="resize \\(--resize\\): unknown mode 'nearest'"):
        get_preset("vqa", "nearest")
    with pytest.raises(ValueError, match="applies to the fixed-size presets .*not to 'views'"):
        get_preset("views", "official")


# --- decompression-bomb limit: a named, configurable error, checked from the header before decoding ----------

def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height (no pixel data: nothing is ever allocated)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [14000, 12000])  # before: "corrupt or truncated" / PIL's raw warning + 2.4 GB
def test_huge_image_is_a_named_error_without_pil_warning(tmp_path: Path, side: int) -> None:
    path = tmp_path / "bomb.png"
    _png_header_only(path, side, side)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning would fail here
        with pytest.raises(ImageTooLargeError, match=f"bomb.png: image too large \\({side * side} pixels > the "
                                                     f"limit of {DEFAULT_MAX_PIXELS}") as err:
            load_image(path)
    assert (err.value.pixels, err.value.limit) == (side * side, DEFAULT_MAX_PIXELS)
    assert isinstance(err.value, ImageDecodeError)
    assert Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_PIXELS, "PIL's own limit is restored"


def test_max_pixels_is_configurable(tmp_path: Path) -> None:
    Image.new("RGB", (100, 60), (1, 2, 3)).save(tmp_path / "m.png")
    with pytest.raises(ImageTooLargeError, match="6000 pixels > the limit of 5999"):
        load_image(tmp_path / "m.png", max_pixels=5999)
    assert load_image(tmp_path / "m.png", max_pixels=6000).size == (100, 60)


def test_dangling_symlink_names_its_target(tmp_path: Path) -> None:
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "elsewhere.jpg")
    with pytest.raises(ImageDecodeError, match="gone.jpg: broken symbolic link .*elsewhere.jpg does not exist"):
        load_image(tmp_path / "gone.jpg")
