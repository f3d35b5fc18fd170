"""Answering one question about one image with a trained VQA checkpoint (`predict_vqa`), or captioning it
with a captioning checkpoint (`predict_caption`): image → encoder → grid → head.

The checkpoint alone is enough (it can be copied anywhere): it carries its config, the vocabularies and the
feature store's provenance, which names the encoder, its weights' sha256 and the preset the head was trained
on — so the image is encoded exactly as the training grids were. No dataset and no feature store is opened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from clipvil.common.distributed import pick_device
from clipvil.encoders import build_encoder, get_preset, load_image, prepare
from clipvil.encoders.preprocess import Prepared, Preset
from clipvil.encoders.weights import WeightsError, sha256_file
from clipvil.engine import checkpoint as ckpt
from clipvil.engine.config import config_from_dict
from clipvil.engine.config_io import ConfigError
from clipvil.engine.grid_source import concat_grids
from clipvil.engine.registry import get_task
from clipvil.families.caption.predict import CaptionResult
from clipvil.families.vqa.predict import VqaAnswer
from clipvil.types import GridFeatures


@dataclass
class LoadedCheckpoint:
    """A checkpoint's predictor (weights loaded) and where it came from."""

    path: Path
    task_name: str
    predictor: Any  # the task's predictor object (e.g. tasks.vqa_predict.VqaPredictor)


def load_predictor(checkpoint: str | Path, device: torch.device | None = None) -> LoadedCheckpoint:
    """The inference-only predictor of a checkpoint, from the checkpoint alone. Errors name the file."""
    path = Path(checkpoint)
    device = device or pick_device("auto")
    state = ckpt.load_checkpoint(path, map_location=device)
    if "config" not in state:
        raise KeyError(f"{path}: the checkpoint carries no config")
    try:
        cfg = config_from_dict(state["config"], source=f"{path} (its saved config)")
    except (ConfigError, KeyError) as err:
        raise ConfigError(f"{path}: its saved config does not load: {err}") from err
    entry = get_task(cfg.task_name)
    if entry.predictor is None:
        raise ValueError(f"{path}: task {cfg.task_name!r} has no single-example predictor")
    try:
        predictor = entry.predictor(cfg.task, state.get("artifacts", {}), device)
    except KeyError as err:
        raise KeyError(f"{path}: {err.args[0]}") from err
    ckpt.load_model_state(predictor.model, state["model"], path)
    predictor.model.eval()
    return LoadedCheckpoint(path, cfg.task_name, predictor)


def _provenances(features: dict[str, Any]) -> list[dict[str, Any]]:
    return list(features.get("plugin") or [features])


def check_weights(features: dict[str, Any], weights: list[Path | None], checkpoint: Path) -> None:
    """Refuses encoder weight files other than the ones the training features were made with."""
    provs = _provenances(features)
    if len(weights) not in (0, len(provs)):
        raise ValueError(f"{checkpoint}: the head was trained on {len(provs)} encoder(s); pass --weights "
                         f"{len(provs)} time(s)")
    for i, prov in enumerate(provs):
        given = weights[i] if weights else None
        random_weights = str(prov["weights_sha256"]).startswith("random")
        if given is None and not random_weights:
            raise WeightsError(f"{checkpoint}: its features were made with {prov['encoder']} weights sha256 "
                               f"{prov['weights_sha256'][:12]}…; pass the same file with --weights")
        if given is not None and sha256_file(given) != prov["weights_sha256"]:
            raise WeightsError(f"{given}: not the weight file the training features were made with "
                               f"({prov['encoder']}, sha256 {prov['weights_sha256'][:12]}…)")


def preset_of(prov: dict[str, Any]) -> Any:
    """The input preset a store was made with, resize mode included (stores written before the `resize` field
    existed used one bicubic resize for the fixed-size presets)."""
    preset = get_preset(prov["preset"])
    if preset.mode == "resize":
        return get_preset(prov["preset"], prov.get("resize") or "direct-bicubic")
    return preset


@dataclass
class GridMaker:
    """One frozen tower with the preset its checkpoint's grids were made with: an image in memory -> its grid."""

    tower: nn.Module  # from clipvil.encoders.build_encoder (eval)
    preset: Preset  # the store's preset, resize mode included (preset_of)
    device: torch.device

    def prepare(self, image: Image.Image) -> Prepared:
        """The normalised input tensor of `image`, as extraction made it."""
        t = self.tower
        return prepare(image, self.preset, t.mean, t.std, t.native_size)  # type: ignore[arg-type]

    def grid(self, image: Image.Image) -> GridFeatures:
        """The grid of one image [1, N, C]."""
        p = self.prepare(image)
        with torch.inference_mode():
            return self.tower(p.pixels[None].to(self.device), [p.content_hw])  # [1, N, C]


TowerBuilder = Callable[[str, "Path | None", int], nn.Module]  # (encoder, weights, block) -> tower on the device


def grid_makers(features: dict[str, Any], weights: list[Path | None], device: torch.device,
                towers: TowerBuilder | None = None) -> list[GridMaker]:
    """A grid maker per encoder of a checkpoint's `features` provenance (a plugin has several); `towers` builds
    (or reuses) a tower, by default a fresh one per call."""
    def fresh(name: str, weight: Path | None, block: int) -> nn.Module:
        return build_encoder(name, weight, block=block).to(device).eval()  # type: ignore[attr-defined]

    build = towers or fresh
    provs = _provenances(features)
    files = list(weights) if weights else [None] * len(provs)
    return [GridMaker(build(str(prov["encoder"]), weight, int(prov.get("block", -1))), preset_of(prov), device)
            for prov, weight in zip(provs, files, strict=True)]


def grid_of(makers: list[GridMaker], image: Image.Image) -> GridFeatures:
    """The grid of one image [1, N, C] from every maker (plugin grids concatenated channel-wise)."""
    grids = [m.grid(image) for m in makers]
    return grids[0] if len(grids) == 1 else concat_grids(grids)


def encode_image(image: str | Path, features: dict[str, Any], weights: list[Path | None],
                 device: torch.device) -> GridFeatures:
    """The grid of one image file [1, N, C], made as the training features were (every plugin encoder)."""
    return grid_of(grid_makers(features, weights, device), load_image(image))


def predict_vqa(
    checkpoint: str | Path,
    image: str | Path,
    question: str | None,
    k: int = 5,
    weights: list[Path | None] | Path | None = None,
) -> VqaAnswer:
    """Top-k answers for `question` about `image` from a VQA checkpoint (any copy of best.pt / last.pt).
    `weights`: the encoder weight file(s) when the training features were not made with random weights."""
    if k < 1:
        raise ValueError(f"--top-k must be >= 1, got {k}")
    if not Path(image).is_file():
        raise FileNotFoundError(f"--image: no such file: {image}")
    loaded = load_predictor(checkpoint)
    if loaded.task_name != "vqa":
        hint = "; leave out --question to caption the image" if loaded.task_name == "caption" else ""
        raise ValueError(f"{checkpoint}: a {loaded.task_name!r} checkpoint, not a VQA one{hint}")
    if question is None or not question.strip():
        raise ValueError(f"{checkpoint}: a VQA checkpoint answers a question: pass --question")
    predictor = loaded.predictor
    files = [weights] if isinstance(weights, Path) else list(weights or [])
    check_weights(predictor.features, files, loaded.path)
    grid = encode_image(image, predictor.features, files, predictor.device)
    return predictor.answer(grid, question, k)


def predict_caption(
    checkpoint: str | Path,
    image: str | Path,
    beam_size: int | None = None,
    weights: list[Path | None] | Path | None = None,
) -> CaptionResult:
    """The caption of `image` from a captioning checkpoint (any copy of best.pt / last.pt), decoded with beam
    search of `beam_size` (None: the recipe's task.beam_size; 1: greedy). `weights` as for `predict_vqa`."""
    if beam_size is not None and beam_size < 1:
        raise ValueError(f"--beam-size must be >= 1, got {beam_size}")
    if not Path(image).is_file():
        raise FileNotFoundError(f"--image: no such file: {image}")
    loaded = load_predictor(checkpoint)
    if loaded.task_name != "caption":
        hint = {"vqa": "; pass --question", "grounding": "; pass --expression"}.get(loaded.task_name, "")
        raise ValueError(f"{checkpoint}: a {loaded.task_name!r} checkpoint, not a captioning one{hint}")
    predictor = loaded.predictor
    files = [weights] if isinstance(weights, Path) else list(weights or [])
    check_weights(predictor.features, files, loaded.path)
    grid = encode_image(image, predictor.features, files, predictor.device)
    return predictor.caption(grid, beam_size)
