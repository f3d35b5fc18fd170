"""What `clipvil serve` runs: the served checkpoints, each behind a small adapter, and in-memory uploads.

    models = load_models(Checkpoints(vqa=Path("runs/demo/run/checkpoints/best.pt")))
    image = decode_upload(data, max_pixels)                  # bytes -> RGB; nothing is written to disk
    models.vqa.answer(image, "What color is the circle?", 5)  # VqaAnswer, as clipvil predict gives
    models.vqa.explain(image, question)                       # Explained: a Grad-CAM PNG and its answer
    models.caption.caption(image)  /  models.grounding.ground(image, "the red circle")  # their results

Every part is optional (None when its checkpoint is not served). Each checkpoint is loaded with
`clipvil.apps.predict.load_predictor` and checked with `check_weights`; images are encoded by the grid makers
`encode_image` uses (`predict.grid_makers`: the checkpoint's provenance names the tower, its weights and the
preset with its resize mode), except that each tower is built once and shared by the parts that use the same
one, and the image comes from memory.

Parts and their predictors (each registered by its task): VQA `tasks.vqa_predict.VqaPredictor.answer`,
captions `tasks.caption_predict.CaptionPredictor.caption`, boxes `tasks.grounding_predict.GroundingPredictor
.locate` (already in the image's pixels). Each predictor carries `.features`, its training grids' provenance.

Concurrency: plain forwards share the towers and heads (eval mode, inference mode, no state). Grad-CAM
hooks its tower's layer, so each explained tower is a private copy used under a lock; concurrent requests
never see each other's activations.
"""

from __future__ import annotations

import copy
import io
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from clipvil.apps.explain import crop_to_content, overlay, relevance_map
from clipvil.apps.predict import (
    GridMaker,
    LoadedCheckpoint,
    check_weights,
    grid_makers,
    grid_of,
    load_predictor,
)
from clipvil.data.question_vocab import question_tokens
from clipvil.encoders import build_encoder
from clipvil.encoders.images import ImageDecodeError, ImageTooLargeError, to_rgb
from clipvil.encoders.preprocess import Preset
from clipvil.encoders.weights import sha256_file
from clipvil.families.caption.predict import CaptionResult
from clipvil.families.grounding.predict import GroundingResult
from clipvil.families.vqa.predict import VqaAnswer
from clipvil.types import GridFeatures

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")  # what an upload may be (no EPS/PDF/... decoders)
UPLOAD = Path("<upload>")  # the name errors give an uploaded image


class UnsupportedImageError(ValueError):
    """Uploaded bytes that are not an image of an allowed format."""


class ExplainError(ValueError):
    """A relevance map that cannot be made for this checkpoint or answer."""


def decode_upload(data: bytes, max_pixels: int) -> Image.Image:
    """An uploaded file's bytes -> RGB (EXIF orientation, alpha over white: `encoders.images.to_rgb`).

    UnsupportedImageError when the bytes are not JPEG/PNG/WebP/GIF/BMP; ImageTooLargeError when width x height
    exceeds `max_pixels` (read from the header, before any pixel is decoded); ImageDecodeError when corrupt."""
    try:
        img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise UnsupportedImageError(f"not an image of an accepted format ({', '.join(ALLOWED_FORMATS)})") from None
    except Image.DecompressionBombError as err:  # more than twice PIL's own limit
        raise ImageDecodeError(f"{UPLOAD}: image too large ({err})") from None
    pixels = img.width * img.height
    if pixels > max_pixels:
        raise ImageTooLargeError(UPLOAD, pixels, max_pixels)
    try:
        img.load()
        return to_rgb(img)
    except Image.DecompressionBombError as err:
        raise ImageDecodeError(f"{UPLOAD}: image too large ({err})") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageDecodeError(f"{UPLOAD}: corrupt or truncated image ({err})") from None


def view_transform(preset: Preset, image_wh: tuple[int, int], content_hw: tuple[int, int]
                   ) -> tuple[float, float, float, float]:
    """(left, top, sx, sy): a point (u, v) of the model's input content is ((u + left) / sx, (v + top) / sy)
    in the original image (`image_wh` = its width, height). Crop presets see a centre crop; the others see it
    all, resized (and padded at the bottom/right, outside the content)."""
    width, height = image_wh
    out_h, out_w = content_hw
    if preset.mode != "crop":
        return 0.0, 0.0, out_w / width, out_h / height
    scale = out_h / min(height, width)
    new_h, new_w = max(out_h, round(height * scale)), max(out_w, round(width * scale))
    top, left = round((new_h - out_h) / 2.0), round((new_w - out_w) / 2.0)  # torchvision's centre crop
    return float(left), float(top), new_w / width, new_h / height


def seen_region(preset: Preset, image_wh: tuple[int, int], content_hw: tuple[int, int],
                covered_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) in the original image of the model-input pixels [0, covered_h) x [0, covered_w) of the
    content (what a relevance map over those pixels lies on), rounded to whole pixels."""
    left, top, sx, sy = view_transform(preset, image_wh, content_hw)
    return (round(left / sx), round(top / sy), round((left + covered_hw[1]) / sx), round((top + covered_hw[0]) / sy))


class Part:
    """One served checkpoint: its predictor and the grid makers of its features' provenance."""

    kind = ""

    def __init__(self, loaded: LoadedCheckpoint, makers: list[GridMaker]) -> None:
        self.loaded, self.predictor, self.makers = loaded, loaded.predictor, makers
        for p in self.predictor.model.parameters():  # inference only: no gradient ever lands on the head
            p.requires_grad_(False)

    @property
    def checkpoint(self) -> Path:
        """The checkpoint file this part serves."""
        return self.loaded.path

    def grid(self, image: Image.Image) -> GridFeatures:
        """The image's grid, made as the training features were (every plugin encoder, concatenated)."""
        return grid_of(self.makers, image)


@dataclass
class Explained:
    """A Grad-CAM relevance map of one answer, drawn over the part of the image the model saw."""

    png: bytes
    answer: str
    score: float  # the answer's probability


class VqaPart(Part):
    """Answers and relevance maps from a VQA checkpoint (`tasks.vqa_predict.VqaPredictor`)."""

    kind = "vqa"

    def __init__(self, loaded: LoadedCheckpoint, makers: list[GridMaker]) -> None:
        super().__init__(loaded, makers)
        self._cam_tower = copy.deepcopy(makers[0].tower) if len(makers) == 1 else None  # hooked by Grad-CAM
        self._cam_lock = threading.Lock()  # one map at a time per tower copy (and matplotlib is not thread-safe)

    def answer(self, image: Image.Image, question: str, k: int = 5) -> VqaAnswer:
        """The top-k answers (probabilities), exactly as `clipvil predict` gives them."""
        return self.predictor.answer(self.grid(image), question, k)

    def explain(self, image: Image.Image, question: str, answer: str | None = None,
                method: str = "gradcam") -> Explained:
        """Grad-CAM of the head's logit for `answer` (default: the top answer) at the tower's grid layer."""
        if self._cam_tower is None:
            raise ExplainError("relevance maps need a single-encoder checkpoint (this one concatenates "
                               f"{len(self.makers)} encoders)")
        pred = self.predictor
        top = self.answer(image, question, k=len(pred.answers))
        probs = dict(top.answers)
        answer = answer or top.answers[0][0]
        if answer not in pred.answers:
            raise ExplainError(f"{answer!r} is not one of the model's {len(pred.answers)} answers")
        label = pred.answers.ans2label[answer]
        ids, _ = pred.encode(question)
        tokens = question_tokens([ids]).to(pred.device)  # [1, T]
        maker = self.makers[0]
        prepared = maker.prepare(image)

        def score(grid: GridFeatures) -> torch.Tensor:
            return pred.model(grid, tokens)[0, label]  # the answer's logit

        with self._cam_lock:
            heat = relevance_map(self._cam_tower, prepared.pixels[None].to(pred.device), prepared.content_hw,
                                 score, method)  # [h, w]
            png = _overlay_png(image, heat, prepared.content_hw, maker, f"{question} → {answer}")
        return Explained(png, answer, float(probs[answer]))


def _overlay_png(image: Image.Image, heat: Any, content_hw: tuple[int, int], maker: GridMaker,
                 title: str) -> bytes:
    """`explain.overlay` of the real cells' map over the region of the original image those cells cover."""
    stride = int(maker.tower.stride)  # type: ignore[arg-type]
    heat = crop_to_content(heat, content_hw, stride)  # [rows, cols]
    covered = (min(heat.shape[0] * stride, content_hw[0]), min(heat.shape[1] * stride, content_hw[1]))
    region = seen_region(maker.preset, image.size, content_hw, covered)
    with tempfile.TemporaryDirectory(prefix="clipvil-serve-") as tmp:  # overlay writes a file; ours, not the user's
        return overlay(image.crop(region), heat, title, Path(tmp) / "explain.png").read_bytes()


class CaptionPart(Part):
    """Captions from a captioning checkpoint (`tasks.caption_predict.CaptionPredictor`)."""

    kind = "caption"

    def caption(self, image: Image.Image) -> CaptionResult:
        """The caption of one image (the recipe's beam size), as `clipvil predict` gives it."""
        return self.predictor.caption(self.grid(image))


class GroundingPart(Part):
    """Boxes from a grounding checkpoint (`tasks.grounding_predict.GroundingPredictor`)."""

    kind = "grounding"

    def ground(self, image: Image.Image, phrase: str) -> GroundingResult:
        """The box of `phrase` in `image` ([x, y, w, h] in the image's pixels)."""
        return self.predictor.locate(self.grid(image), phrase, (image.height, image.width))


@dataclass(frozen=True)
class Checkpoints:
    """The checkpoint file of each part to serve (None: that part is not served)."""

    vqa: Path | None = None
    caption: Path | None = None
    grounding: Path | None = None


@dataclass
class ServedModels:
    """The loaded parts; each None when not served."""

    vqa: VqaPart | None = None
    caption: CaptionPart | None = None
    grounding: GroundingPart | None = None

    def parts(self) -> dict[str, bool]:
        """Which parts are served."""
        return {"vqa": self.vqa is not None, "caption": self.caption is not None,
                "grounding": self.grounding is not None}


_PARTS: dict[str, type[Part]] = {"vqa": VqaPart, "caption": CaptionPart, "grounding": GroundingPart}


class _Towers:
    """Builds each (encoder, weight file, block) once; parts that share a tower share it."""

    def __init__(self, weights: Sequence[Path], device: torch.device) -> None:
        self.device = device
        self._by_sha = {sha256_file(w): Path(w) for w in weights}
        self._built: dict[tuple[str, str, int], nn.Module] = {}

    def weights_for(self, features: dict[str, Any], checkpoint: Path) -> list[Path | None]:
        """The given weight file of each encoder of `features`, matched by sha256 (checked by check_weights)."""
        provs = list(features.get("plugin") or [features])
        chosen = [self._by_sha.get(str(p["weights_sha256"])) for p in provs]
        files = [] if all(c is None for c in chosen) else chosen
        check_weights(features, files, checkpoint)
        return chosen

    def tower(self, name: str, weight: Path | None, block: int) -> nn.Module:
        """The tower of (encoder, weights, block), built once and shared by every checkpoint that uses it."""
        key = (name, str(weight), block)
        if key not in self._built:
            self._built[key] = build_encoder(name, weight, block=block).to(self.device).eval()  # type: ignore[attr-defined]
        return self._built[key]

    def makers(self, features: dict[str, Any], weights: list[Path | None]) -> list[GridMaker]:
        """A grid maker per encoder of `features` (a plugin has several), over the shared towers."""
        return grid_makers(features, weights, self.device, towers=self.tower)


def load_models(checkpoints: Checkpoints, weights: Sequence[Path] = (), device: torch.device | None = None
                ) -> ServedModels:
    """Loads every given checkpoint (its task must match its part). `weights`: local encoder weight files,
    each matched to the checkpoints whose features were made with it (by sha256); random-weight features need
    none. Errors name the checkpoint."""
    towers: _Towers | None = None
    models = ServedModels()
    for kind, path in (("vqa", checkpoints.vqa), ("caption", checkpoints.caption),
                       ("grounding", checkpoints.grounding)):
        if path is None:
            continue
        if not Path(path).is_file():
            raise FileNotFoundError(f"--{kind}-checkpoint: no such file: {path}")
        loaded = load_predictor(path, device)
        if loaded.task_name != kind:
            raise ValueError(f"{path}: a {loaded.task_name!r} checkpoint, not a {kind!r} one")
        predictor = loaded.predictor
        features = getattr(predictor, "features", None)
        if not isinstance(features, dict):
            raise KeyError(f"{path}: the predictor carries no feature provenance ('features')")
        towers = towers or _Towers(weights, predictor.device)
        part = _PARTS[kind](loaded, towers.makers(features, towers.weights_for(features, loaded.path)))
        setattr(models, kind, part)
    return models
