"""`clipvil predict --expression`: the box of a referring expression in one image, drawn into a PNG.

    result = predict_box(Path("run/checkpoints/best.pt"), Path("img.jpg"), "the red circle", Path("box.png"))

The checkpoint alone is enough: the image is encoded with the encoder and preset its training grids were
made with (`clipvil.apps.predict.encode_image`), and the box comes back to the image's pixels through the
store's preset (`clipvil.families.grounding.frame`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from clipvil.apps.predict import check_weights, encode_image, load_predictor
from clipvil.encoders import load_image
from clipvil.families.grounding.predict import GroundingResult


def draw_box(image: Image.Image, box_xywh: Sequence[float], label: str, out: Path,
             gold_xywh: Sequence[float] | None = None) -> Path:
    """Writes `image` as a PNG with the box (red) — and a gold box (green) when given — and `label` above it."""
    img = image.convert("RGB").copy()
    draw = ImageDraw.Draw(img)
    width = max(2, round(max(img.size) / 150))
    if gold_xywh is not None:
        x, y, w, h = gold_xywh
        draw.rectangle([x, y, x + w, y + h], outline=(40, 220, 40), width=width)
    x, y, w, h = box_xywh
    draw.rectangle([x, y, x + w, y + h], outline=(235, 30, 30), width=width)
    left, top, right, bottom = draw.textbbox((0, 0), label)
    ty = max(0.0, y - (bottom - top) - 4)
    draw.rectangle([x, ty, x + (right - left) + 4, ty + (bottom - top) + 4], fill=(235, 30, 30))
    draw.text((x + 2, ty + 2 - top), label, fill=(255, 255, 255))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out, format="PNG")
    return out


def predict_box(
    checkpoint: str | Path,
    image: str | Path,
    expression: str,
    out: str | Path | None = None,
    weights: list[Path | None] | Path | None = None,
) -> GroundingResult:
    """The box of `expression` in `image` from a grounding checkpoint; with `out`, also the PNG with the box.
    `weights`: the encoder weight file when the training features were not made with random weights."""
    if not Path(image).is_file():
        raise FileNotFoundError(f"--image: no such file: {image}")
    loaded = load_predictor(checkpoint)
    if loaded.task_name != "grounding":
        raise ValueError(f"{checkpoint}: a {loaded.task_name!r} checkpoint, not a grounding one (--expression)")
    predictor = loaded.predictor
    files = [weights] if isinstance(weights, Path) else list(weights or [])
    check_weights(predictor.features, files, loaded.path)
    picture = load_image(image)
    grid = encode_image(image, predictor.features, files, predictor.device)
    result = predictor.locate(grid, expression, (picture.height, picture.width))
    if out is not None:
        draw_box(picture, result.box_xywh, expression, Path(out))
    return result
