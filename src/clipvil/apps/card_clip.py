"""Card describers of the CLIP recipes: contrastive pre-training (`clip`), the supervised ImageNet-style
baseline (`classify`), and the evaluation-only zero-shot recipes (`retrieval`, `zeroshot_vqa`).

- clip: both towers at the recipe's input size (the architecture's image size, 77 text tokens), open_clip's
  ClipLoss with the batch as the negatives. A training sample is one image-caption pair. Frozen parts (the
  text tower, the first image stages) run forward: their forward FLOPs count, their backward does not. The
  B x B similarity matrix at the recipe's batch adds 2 x B x D FLOPs a sample (forward), not measured at the
  card's batch of 1 (under a thousandth of the towers').
- classify: the tower end to end (a timm model, or an open_clip image tower + linear head) under
  cross-entropy at the model's input size.
- retrieval / zeroshot_vqa: no training. Forward FLOPs per test sample: retrieval = one image + its captions +
  its row of the image x caption similarity matrix; zero-shot VQA = one image + (answers x templates that
  read the question) candidate texts + their similarities (templates without the question: the answers once
  for the whole set).
"""

from __future__ import annotations

from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from torch import nn

from clipvil.apps.card_parts import CardOptions, CardParts, CardPhase, register_card
from clipvil.apps.card_sizes import (
    FLICKR_SOURCE,
    FLICKR_TEST_IMAGES,
    IMAGENET,
    IMAGENET_SOURCE,
    KARPATHY_CAPTIONS,
    KARPATHY_IMAGES,
    KARPATHY_SOURCE,
    KARPATHY_TRAIN_RESTVAL,
)
from clipvil.apps.card_vqa import VQA_SIZES, VQA_SIZES_SOURCE, answer_count
from clipvil.data.prompts import uses_question
from clipvil.engine.config import RunConfig
from clipvil.families.clip.model import create_clip, freeze

SCENE_LABELS = {"attribute": 14, "shape": 6, "color": 8}  # the synthetic scenes' label kinds (6 shapes, 8 colours)


def _image_size(model: nn.Module) -> tuple[int, int]:
    size = open_clip.get_model_preprocess_cfg(model)["size"]
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _pixels(batch: int, hw: tuple[int, int]) -> torch.Tensor:
    return torch.randn(batch, 3, *hw)  # [B, 3, H, W]


def _texts(model: nn.Module, batch: int) -> torch.Tensor:
    return torch.randint(1, model.vocab_size, (batch, model.context_length))  # [B, 77]


def _karpathy(data: Any) -> tuple[dict[str, Any], dict[str, int]]:
    """(datasets, {split name: images}) of a Karpathy/Flickr `task.data`, sizes of the known splits."""
    if data.format == "karpathy":
        images = {"train+restval": KARPATHY_TRAIN_RESTVAL, **KARPATHY_IMAGES}
        out: dict[str, Any] = {"source": KARPATHY_SOURCE}
        counts = {}
        for name, split in data.splits.items():
            if split in images:
                counts[name] = images[split]
                caps = KARPATHY_CAPTIONS.get(split)
                out[name] = {"images": images[split], **({"captions": caps} if caps else {}), "split": split}
            else:
                out[name] = {"split": split, "note": "size not known to the card"}
        return out, counts
    if data.format == "flickr30k":
        flickr: dict[str, Any] = {"source": FLICKR_SOURCE}
        for name, split in data.splits.items():
            flickr[name] = ({"images": FLICKR_TEST_IMAGES, "split": split} if split == "test"
                            else {"split": split, "note": "size not known to the card"})
        return flickr, {n: FLICKR_TEST_IMAGES for n, s in data.splits.items() if s == "test"}
    return {"source": f"task.data format {data.format}", **{n: {"split": s, "note": "size not known to the card"}
                                                            for n, s in data.splits.items()}}, {}


def describe_clip(cfg: RunConfig, opts: CardOptions) -> CardParts:
    t = cfg.task
    model = create_clip(t.model, None, t.quick_gelu)  # random weights: the values do not matter
    frozen = freeze(model, t.freeze_text, t.freeze_image_stages)
    hw = _image_size(model)
    loss = ClipLoss()

    def run(batch: int) -> torch.Tensor:
        image, text, scale = model(_pixels(batch, hw), _texts(model, batch))  # [B, D], [B, D], []
        return loss(image, text, scale)

    datasets, _ = _karpathy(t.data)
    train_n = None
    if t.data.format == "karpathy" and t.data.splits.get("train") == "train+restval":
        train_n = KARPATHY_CAPTIONS["train+restval"]  # a pair per caption
        datasets["train"]["pairs"] = train_n
    notes = [(f"both towers at {hw[0]}x{hw[1]} pixels and {model.context_length} text tokens; a sample is an "
              "image-caption pair, the batch its negatives (the similarity matrix is not measured: < 0.1% of the "
              "towers' FLOPs)"),
             "frozen: " + (", ".join(frozen) if frozen else "nothing") + " (forward counted, no backward)"]
    if t.weights:
        notes.append(f"the recipe starts from {t.weights}; the card uses random weights of the same architecture")
    facts = {"model": t.model, "image": hw, "text_tokens": model.context_length,
             "frozen": ", ".join(frozen) or "nothing"}
    phase = CardPhase("train", run, 1.0, "one image-caption pair, both towers")
    return CardParts(model=model, phases=[phase], facts=facts, datasets=datasets, train_samples=train_n,
                     input_bytes=3 * hw[0] * hw[1], notes=notes, measure_key=[t.model, hw, frozen, t.quick_gelu])


def describe_classify(cfg: RunConfig, opts: CardOptions) -> CardParts:
    t = cfg.task
    notes: list[str] = []
    if t.labels == "folder":
        classes = IMAGENET["classes"]
        notes.append(f"{classes:,} classes assumed (ImageNet-1k; the folder's classes are read at training time)")
    else:
        classes = SCENE_LABELS.get(t.label_kind, 14)
        notes.append(f"{classes} labels of the synthetic scenes ({t.label_kind})")
    if t.timm_model:
        import timm

        model = timm.create_model(t.timm_model, pretrained=False, num_classes=classes)
        size = timm.data.resolve_data_config({}, model=model)["input_size"]
        hw, name = (int(size[1]), int(size[2])), f"timm {t.timm_model}"
    else:
        from clipvil.families.clip.classify import Classifier

        clip = create_clip(t.model)
        model, hw, name = Classifier(clip.visual, int(clip.visual.output_dim), classes), _image_size(clip), t.model

    def run(batch: int) -> torch.Tensor:
        logits = model(_pixels(batch, hw))  # [B, C]
        if t.labels == "folder":
            return F.cross_entropy(logits.float(), torch.randint(0, classes, (batch,)))
        return F.binary_cross_entropy_with_logits(logits.float(), torch.rand(batch, classes).round())

    imagenet = t.labels == "folder" and "imagenet" in str(t.root).lower()  # an ImageNet folder, by its name
    datasets = ({"source": IMAGENET_SOURCE, "train": {"images": IMAGENET["train"]}, "val": {"images": IMAGENET["val"]}}
                if imagenet else {"source": f"{t.root}", "train": {"note": "size not known to the card"}})
    if not imagenet:
        notes.append("dataset size not known to the card (the ImageNet-1k sizes are used for a folder named "
                     "imagenet only)")
    facts = {"model": name, "image": hw, "classes": classes, "labels": t.labels}
    phase = CardPhase("train", run, 1.0, f"one image at {hw[0]}x{hw[1]}")
    return CardParts(model=model, phases=[phase], facts=facts, datasets=datasets,
                     train_samples=IMAGENET["train"] if imagenet else None, input_bytes=3 * hw[0] * hw[1],
                     notes=["the tower is trained end to end: counted", *notes], measure_key=[name, hw, classes])


def _eval_parts(model: nn.Module, n_texts: float, n_scores: int, notes: list[str]) -> list[CardPhase]:
    """The forward parts of one evaluated sample: its image, its candidate texts, their similarities."""
    hw = _image_size(model)
    dim = int(model.text_projection.shape[1]) if isinstance(model.text_projection, torch.Tensor) else 512

    def image(batch: int) -> torch.Tensor:
        return model.encode_image(_pixels(batch, hw), normalize=True).sum()

    def text(batch: int) -> torch.Tensor:
        return model.encode_text(_texts(model, batch), normalize=True).sum()

    def scores(batch: int) -> torch.Tensor:
        return (torch.randn(batch, dim) @ torch.randn(dim, n_scores)).sum()  # [B, texts] cosine similarities

    notes.append(f"image tower at {hw[0]}x{hw[1]}, text tower over {model.context_length} tokens; forward only")
    return [CardPhase("image", image, 1.0, "the image tower, once per sample"),
            CardPhase("texts", text, 1.0, "the text tower, once per candidate text", repeat=n_texts),
            CardPhase("scores", scores, 1.0, f"a row of {n_scores:,} similarities")]


def describe_retrieval(cfg: RunConfig, opts: CardOptions) -> CardParts:
    t = cfg.task
    model = create_clip(t.model, None, t.quick_gelu)
    datasets, counts = _karpathy(t.data)
    split = cfg.train.eval_splits[0] if cfg.train.eval_splits else next(iter(t.data.splits))
    datasets = {k: v for k, v in datasets.items() if k in ("source", split)}  # only the evaluated split
    images = counts.get(split)
    if images is not None and t.data.max_images:
        images = min(images, t.data.max_images)
        datasets[split]["evaluated images"] = images
    per_image = t.data.captions_per_image or 5
    notes = [(f"a sample is a test image with its first {per_image} captions (every caption scored against "
              "every image: one similarity-matrix row per image)")]
    if not t.data.captions_per_image:
        notes.append("captions per image not set: 5 assumed (COCO / Flickr30k)")
    n_captions = per_image * images if images is not None else per_image * 5_000
    parts = _eval_parts(model, per_image, n_captions, notes)
    facts = {"model": t.model, "split": split, "captions_per_image": per_image}
    return CardParts(model=model, phases=parts, facts=facts, datasets=datasets, train_samples=None,
                     input_bytes=3 * _image_size(model)[0] * _image_size(model)[1], notes=notes,
                     evaluation_only=True, eval_samples=images, measure_key=[t.model, n_captions, per_image])


def describe_zeroshot_vqa(cfg: RunConfig, opts: CardOptions) -> CardParts:
    t = cfg.task
    model = create_clip(t.model, None, t.quick_gelu)
    notes: list[str] = []
    answers = answer_count(t.answer_vocab, opts, notes)
    if t.max_answers:
        answers = min(answers, t.max_answers)
    split = cfg.train.eval_splits[0] if cfg.train.eval_splits else next(iter(t.splits))
    sub = t.splits.get(split)
    questions = VQA_SIZES[sub][0] if sub in VQA_SIZES else None
    datasets = {"source": VQA_SIZES_SOURCE,
                split: ({"questions": VQA_SIZES[sub][0], "images": VQA_SIZES[sub][1], "subtype": sub}
                        if sub in VQA_SIZES else {"subtype": str(sub), "note": "size not known to the card"})}
    per_question = sum(answers for tpl in t.templates if uses_question(tpl))
    shared = sum(answers for tpl in t.templates if not uses_question(tpl))
    texts = per_question + (shared / questions if questions else 0.0)
    notes.append(f"a sample is a question: its image + {per_question:,} candidate texts ({answers:,} answers x the "
                 f"templates {t.templates} that read the question)" + (f"; {shared:,} shared answer texts spread "
                                                                       "over the set" if shared else ""))
    parts = _eval_parts(model, texts, answers * len(t.templates), notes)
    facts = {"model": t.model, "split": split, "answers": answers, "templates": ", ".join(t.templates)}
    hw = _image_size(model)
    return CardParts(model=model, phases=parts, facts=facts, datasets=datasets, train_samples=None,
                     input_bytes=3 * hw[0] * hw[1], notes=notes, evaluation_only=True, eval_samples=questions,
                     measure_key=[t.model, answers, t.templates])


register_card("clip", describe_clip)
register_card("classify", describe_classify)
register_card("retrieval", describe_retrieval)
register_card("zeroshot_vqa", describe_zeroshot_vqa)

__all__ = ["describe_classify", "describe_clip", "describe_retrieval", "describe_zeroshot_vqa"]
