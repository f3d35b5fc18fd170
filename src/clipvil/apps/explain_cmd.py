"""`clipvil explain`: Grad-CAM maps of a trained head's answer, or of a CLIP image–text match, over the image.

    clipvil explain --checkpoint run/best.pt --image img.jpg --question "what color is the circle?" --out map.png
    clipvil explain --checkpoint run/best.pt --images DIR --question "..." --out maps/     # + maps/index.html
    clipvil explain --encoder RN50 --weights RN50.pt --image img.jpg --text "a red circle" --out map.png

VQA checkpoint (captioning checkpoints alike: the score is then the log-probability of the model's own
caption, or of ``--text``): the image is encoded as the head's training grids were (encoder, weights, preset and
block from
the checkpoint's feature provenance), the score is the logit of the top answer (or of ``--answer``), and the
gradient runs from the head *through the tower* (the tower is re-run on the image with gradients on; the
cached grids the head was trained on are not used). The map is Grad-CAM (`clipvil.apps.explain`): for CLIP
ResNets over the last convolutional map (layer4, the grid), for ViTs the gradient-weighted relevance of the
patch tokens entering the grid's block. CLIP pair: the score is the cosine of the pooled image embedding with
the text embedding of the same CLIP's text tower (open_clip's model of the encoder's name, the text weights
from the same file; without a file both towers are random and the title says so).

The map spans the part of the image the grid covers (`clipvil.families.grounding.frame`): the whole image for
resized and padded inputs, the central square for center-cropped ones, which is then what is drawn.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from clipvil.apps.explain import (
    METHODS,
    ScoreFn,
    cosine_score,
    crop_to_content,
    overlay,
    relevance_map,
    write_index_html,
)
from clipvil.apps.extract import IMAGE_SUFFIXES
from clipvil.apps.predict import check_weights, load_predictor
from clipvil.encoders import build_encoder, get_preset, load_image, prepare
from clipvil.encoders.registry import RANDOM_INIT_SEED, canonical_name, tower_family
from clipvil.encoders.tower import Tower
from clipvil.encoders.weights import WeightsError, read_weights
from clipvil.families.grounding.frame import grid_frame
from clipvil.types import GridFeatures

log = logging.getLogger(__name__)
Box = Sequence[float]


@dataclass
class Explanation:
    """One map: what was scored, its score and where the picture went."""

    image: Path
    label: str  # the answer (VQA) or the text (CLIP pair) whose score the map explains
    score: float  # the answer's logit, or the cosine
    title: str
    heat: np.ndarray  # [h, w] over the real cells, max 1
    region: tuple[float, float, float, float]  # the part of the image (x, y, w, h pixels) the map spans
    out: Path | None = None


@dataclass
class Scorer:
    """What `explain_image` needs: a tower, its input preset, and a way to score one image's grid."""

    tower: Tower
    preset: str  # input preset name (the head's training preset)
    resize: str | None  # its resize mode (fixed-size presets)
    pick: Callable[[GridFeatures], tuple[ScoreFn, str, str]]  # grid → (score_fn, label, title prefix)


def tower_map(tower: Tower, preset: str, resize: str | None, image: Image.Image, score_fn: ScoreFn,
              method: str = "gradcam") -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """(map over the real cells, the image region it spans) of `score_fn` for one RGB image."""
    p = get_preset(preset, resize)
    prepared = prepare(image, p, tower.mean, tower.std, tower.native_size)
    content = prepared.content_hw if p.mode == "pad" else None
    heat = relevance_map(tower, prepared.pixels[None], content, score_fn, method)
    if content is not None:
        heat = crop_to_content(heat, content, tower.stride)
    prov = {"preset": preset, "resize": resize, "stride": tower.stride,
            "input_size": f"{tower.native_size}x{tower.native_size}"}
    frame = grid_frame(prov, (image.height, image.width), heat.shape)
    return heat, frame.covered()


def _grid(tower: Tower, preset: str, resize: str | None, image: Image.Image) -> GridFeatures:
    p = get_preset(preset, resize)
    prepared = prepare(image, p, tower.mean, tower.std, tower.native_size)
    with torch.no_grad():
        return tower(prepared.pixels[None], [prepared.content_hw], pooled=tower.embed_dim is not None)


def explain_image(scorer: Scorer, image_path: str | Path, out: Path | None, method: str = "gradcam",
                  boxes_xywh: Sequence[Box] = ()) -> Explanation:
    """The map of one image (and, with `out`, its PNG with the label and score in the title)."""
    path = Path(image_path)
    if not path.is_file():
        raise FileNotFoundError(f"--image: no such file: {path}")
    image = load_image(path)
    grid = _grid(scorer.tower, scorer.preset, scorer.resize, image)
    score_fn, label, title = scorer.pick(grid)
    with torch.no_grad():
        score = float(score_fn(grid))
    heat, region = tower_map(scorer.tower, scorer.preset, scorer.resize, image, score_fn, method)
    title = f"{title} (score {score:.3f})"
    result = Explanation(path, label, score, title, heat, region)
    if out is not None:
        x, y, w, h = region
        shown = image.crop((round(x), round(y), round(x + w), round(y + h)))
        shifted = [(bx - x, by - y, bw, bh) for bx, by, bw, bh in boxes_xywh]
        result.out = overlay(shown, heat, title, out, shifted)
    return result


EXPLAINED_TASKS = ("vqa", "caption")  # checkpoints whose outputs explain maps


@dataclass
class Head:
    """A VQA or captioning checkpoint's head and the tower its training grids came from, loaded once."""

    task: str  # "vqa" | "caption"
    tower: Tower
    predictor: Any  # the task's predictor (tasks.vqa_predict.VqaPredictor, tasks.caption_predict.CaptionPredictor)
    preset: str  # the training grids' input preset
    resize: str | None


def load_head(checkpoint: str | Path, weights: Path | None = None) -> Head:
    """The head of a checkpoint and its tower (rebuilt from the feature provenance; `weights` when the
    training grids were not made with random weights)."""
    loaded = load_predictor(checkpoint, torch.device("cpu"))
    if loaded.task_name not in EXPLAINED_TASKS:
        raise ValueError(f"{checkpoint}: a {loaded.task_name!r} checkpoint: not supported for this checkpoint "
                         f"(explain maps the outputs of {' and '.join(EXPLAINED_TASKS)} checkpoints)")
    prov = loaded.predictor.features
    if "plugin" in prov:
        raise ValueError(f"{checkpoint}: the head reads a plugin of {len(prov['plugin'])} encoders; explain maps "
                         "one tower")
    check_weights(prov, [weights] if weights else [], loaded.path)
    tower = build_encoder(prov["encoder"], weights, block=int(prov.get("block", -1)))
    loaded.predictor.model.float()
    return Head(loaded.task_name, tower, loaded.predictor, str(prov["preset"]), prov.get("resize") or None)


def load_vqa_head(checkpoint: str | Path, weights: Path | None = None) -> Head:
    """`load_head` for a checkpoint that must be a VQA one."""
    head = load_head(checkpoint, weights)
    if head.task != "vqa":
        raise ValueError(f"{checkpoint}: a {head.task!r} checkpoint, not a VQA one")
    return head


def caption_scorer(head: Head, caption: str | None = None) -> Scorer:
    """A Scorer for a captioning checkpoint: the summed log-probability of `caption` (None: the caption the
    model itself writes for each image, greedy), teacher-forced over the grid."""
    predictor = head.predictor
    vocab, model = predictor.vocab, predictor.model

    def pick(grid: GridFeatures) -> tuple[ScoreFn, str, str]:
        text = caption if caption is not None else predictor.caption(grid, 1).caption
        ids = torch.tensor([vocab.encode(text, pad=False)])  # [1, L+2]: bos ... eos
        if ids.shape[1] > 2 and int((ids == vocab.unk_id).sum()) == ids.shape[1] - 2:
            raise ValueError(f"no word of the caption {text!r} is in the model's vocabulary")

        def score(g: GridFeatures) -> torch.Tensor:
            logp = model(g, ids[:, :-1])[0]  # [L+1, V]
            return logp.gather(1, ids[0, 1:, None]).sum()

        return score, text, f"caption: {text} (log-prob)"

    return Scorer(head.tower, head.preset, head.resize, pick)


def vqa_scorer(head: Head, question: str, answer: str | None = None) -> Scorer:
    """A Scorer for one question: the logit of `answer` (None: the top answer of each image)."""
    predictor = head.predictor
    ids, notes = predictor.encode(question)
    for note in notes:
        log.warning("explain: %s", note)
    tokens = torch.tensor([ids])  # [1, T]
    model, labels = predictor.model, predictor.answers.label2ans
    if answer is not None and answer not in predictor.answers.ans2label:
        raise KeyError(f"--answer {answer!r} is not one of the head's {len(labels)} answers")

    def pick(grid: GridFeatures) -> tuple[ScoreFn, str, str]:
        with torch.no_grad():
            logits = model(grid, tokens)[0]  # [A]
        k = predictor.answers.ans2label[answer] if answer is not None else int(logits.argmax())
        prob = 1 / (1 + math.exp(-float(logits[k])))
        return (lambda g: model(g, tokens)[0, k]), labels[k], f"Q: {question}  A: {labels[k]} (p {prob:.2f})"

    return Scorer(head.tower, head.preset, head.resize, pick)


@dataclass
class ClipPair:
    """A CLIP image tower and the text embedder of the same model."""

    tower: Tower
    embed_text: Callable[[str], torch.Tensor]  # text → [D]
    random: bool  # no weight file: both towers random


def load_clip_pair(encoder: str, weights: Path | None = None) -> ClipPair:
    """The image tower of `encoder` and its CLIP text tower (weights from the same file; random and seeded
    like build_encoder's towers without one)."""
    import open_clip

    name = canonical_name(encoder)
    if tower_family(name) == "timm-imagenet":
        raise ValueError(f"--text: {name} has no text tower (an ImageNet classifier); use a CLIP encoder")
    tower = build_encoder(name, weights)
    if tower.embed_dim is None:
        raise ValueError(f"--text: {name} gives no pooled image embedding")
    loaded = read_weights(weights) if weights is not None else None
    quick = (tower.activation is not None and tower.activation.name == "quick_gelu") or \
        (loaded is not None and loaded.format == "openai-torchscript")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        model = open_clip.create_model(name, pretrained=None, force_quick_gelu=quick)
    if loaded is not None:
        text_state = {k: v for k, v in loaded.state.items() if not k.startswith("visual.") and
                      k not in ("input_resolution", "context_length", "vocab_size")}
        result = model.load_state_dict(text_state, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith("visual.")]
        if missing or result.unexpected_keys:
            raise WeightsError(f"{weights}: not the text tower of {name} (missing {missing[:3]}, unexpected "
                               f"{list(result.unexpected_keys)[:3]})")
    model.eval()
    tokenizer = open_clip.get_tokenizer(name)

    def embed_text(text: str) -> torch.Tensor:
        with torch.no_grad():
            return model.encode_text(tokenizer([text]))[0].float()  # [D]

    return ClipPair(tower, embed_text, weights is None)


def text_scorer(pair: ClipPair, text: str, preset: str = "native") -> Scorer:
    """A Scorer for a CLIP image–text pair: the cosine of the pooled image embedding with `text`'s."""
    score = cosine_score(pair.embed_text(text))
    note = " [RANDOM weights]" if pair.random else ""
    return Scorer(pair.tower, preset, None, lambda grid: (score, text, f"{pair.tower.name}{note}: '{text}'"))


def image_files(folder: Path) -> list[Path]:
    """The images of a folder (not recursive), sorted."""
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"--images: no such folder: {folder}")
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"--images {folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def explain_folder(scorer: Scorer, folder: Path, out_dir: Path, method: str = "gradcam") -> list[Explanation]:
    """One PNG per image of `folder` in `out_dir`, and out_dir/index.html showing them with their titles."""
    results = [explain_image(scorer, p, Path(out_dir) / f"{p.stem}.png", method) for p in image_files(folder)]
    write_index_html(Path(out_dir), [(r.out.name, r.title) for r in results if r.out is not None])
    return results


def explain(*, out: Path, image: Path | None = None, images: Path | None = None, checkpoint: Path | None = None,
            question: str | None = None, answer: str | None = None, encoder: str | None = None,
            text: str | None = None, weights: Path | None = None, method: str = "gradcam",
            preset: str = "native") -> list[Explanation]:
    """What `clipvil explain` does: one image (`image` → `out` PNG) or a folder (`images` → `out` folder)."""
    if (image is None) == (images is None):
        raise ValueError("give one of --image FILE or --images DIR")
    if method not in METHODS:
        raise ValueError(f"--method: unknown {method!r}; known: {', '.join(METHODS)}")
    if checkpoint is not None:
        head = load_head(checkpoint, weights)
        if head.task == "caption":
            if question is not None:
                raise ValueError(f"{checkpoint}: a captioning checkpoint takes no --question (--text: a caption "
                                 "to explain instead of the model's own)")
            scorer = caption_scorer(head, text)
        else:
            if question is None or text is not None:
                raise ValueError(f"{checkpoint}: a VQA checkpoint explains a --question (not --text)")
            scorer = vqa_scorer(head, question, answer)
    elif encoder is not None and text is not None:
        scorer = text_scorer(load_clip_pair(encoder, weights), text, preset)
    else:
        raise ValueError("give --checkpoint CKPT --question Q (a VQA head), or --encoder NAME --text T (CLIP)")
    if image is not None:
        return [explain_image(scorer, image, out, method)]
    return explain_folder(scorer, images, out, method)  # type: ignore[arg-type]


def summary(results: list[Explanation]) -> list[dict[str, Any]]:
    """JSON-able rows: image, label, score, PNG."""
    return [{"image": str(r.image), "label": r.label, "score": round(r.score, 4), "out": str(r.out)} for r in results]
