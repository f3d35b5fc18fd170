"""The card describer of captioning recipes (configs/caption/): the Transformer captioner over cached grids,
trained with cross-entropy ("xe") then self-critical sequence training ("scst"), as the recipe's phases say.

A training sample is an image (batch sizes count images):
- XE: `seq_per_img` caption rows teacher-forced over the image's grid, each `max_caption_words` + 1 positions
  (batches pad to their longest caption; with 5 captions an image the longest reaches the clip);
- SCST: one greedy caption (no grad, eval mode: the baseline) + `scst_samples` sampled captions with grad, each
  decoded incrementally for `decode_max_len` tokens, then REINFORCE over the samples' log-probs. Random weights
  rarely emit eos, so every caption runs to the maximum length: an upper bound (trained captions stop after
  ~10 words). The CIDEr-D reward is CPU work on token ids, not counted.
The visual tower is frozen (cached features): only the captioner is counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from clipvil.apps.card_parts import CardOptions, CardParts, CardPhase, grid_shape, materialise, register_card
from clipvil.apps.card_sizes import (
    COCO_TEST2014_IMAGES,
    KARPATHY_CAPTIONS,
    KARPATHY_IMAGES,
    KARPATHY_SOURCE,
    KARPATHY_TRAIN_RESTVAL,
)
from clipvil.data.captions import read_karpathy
from clipvil.data.tokenizers import CaptionVocab
from clipvil.engine.config import RunConfig
from clipvil.engine.models import build_model
from clipvil.families.caption.reward import scst_loss, xe_loss
from clipvil.nn.decoding import greedy_decode, sample_decode
from clipvil.types import GridFeatures

# self-critical.pytorch's scripts/prepro_labels.py on Karpathy's COCO (words seen more than 5 times) gives the
# 9,487-entry cocotalk vocabulary (UNK included): 9,486 words + our 4 specials (pad, bos, eos, unk)
COCO_WORDS = 9_486


def caption_vocab_size(vocab_file: Path | None, notes: list[str]) -> tuple[int, bool]:
    """(ids of the caption vocabulary, whether the size is an assumption)."""
    if vocab_file is not None and Path(vocab_file).is_file():
        n = len(CaptionVocab.load(vocab_file))
        notes.append(f"caption vocabulary of {n:,} ids: the size of {vocab_file}")
        return n, False
    n = COCO_WORDS + 4
    notes.append(f"caption vocabulary of {n:,} ids assumed: {COCO_WORDS:,} words (self-critical.pytorch's cocotalk "
                 "vocabulary of Karpathy's COCO at count > 5, 9,487 entries with UNK) + pad/bos/eos/unk; it is built "
                 "from the data at training time and sizes only the word embedding and the output layer")
    return n, True


def _grid(batch: int, hw: tuple[int, int], dim: int) -> GridFeatures:
    n = hw[0] * hw[1]
    return GridFeatures(torch.randn(batch, n, dim), torch.ones(batch, n, dtype=torch.bool), hw)  # [B, N, C]


def _xe_fn(model: nn.Module, hw: tuple[int, int], dim: int, vocab: int, rows: int, length: int):
    def run(batch: int) -> torch.Tensor:
        tokens = torch.randint(4, vocab, (batch * rows, length + 1))  # [B*E, L+1]: bos .. eos
        tokens[:, 0] = CaptionVocab.bos_id
        tokens[:, -1] = CaptionVocab.eos_id
        logprobs = model(_grid(batch, hw, dim), tokens[:, :-1])  # [B*E, L, V]
        return xe_loss(logprobs, tokens[:, 1:], CaptionVocab.pad_id)

    return run


def _scst_fn(model: nn.Module, hw: tuple[int, int], dim: int, samples: int, max_len: int, greedy: bool,
             temperature: float):
    ids = {"bos": CaptionVocab.bos_id, "eos": CaptionVocab.eos_id, "pad": CaptionVocab.pad_id, "max_len": max_len}

    def run(batch: int) -> torch.Tensor:
        grid = _grid(batch, hw, dim)
        if greedy:  # the baseline: decoded in eval mode without grad, as the task does
            model.eval()
            with torch.no_grad():
                greedy_decode(model, model.encode(grid), batch, **ids)
            model.train()
        out = sample_decode(model, model.encode(grid), batch, n=samples, temperature=temperature, **ids)
        advantage = torch.randn(batch * samples)  # [B*k] reward - baseline (CIDEr-D, not counted)
        return scst_loss(out.logprobs, out.mask, advantage)

    return run


def karpathy_counts(path: Path) -> dict[str, dict[str, int]]:
    """{split: {"images": n, "captions": n}} of a Karpathy dataset_coco.json, restval apart (Karpathy's names)."""
    counts = {name: {"images": 0, "captions": 0} for name in ("train", "restval", "val", "test")}
    for image in read_karpathy(path, restval_as_train=False).images:
        counts[image.split]["images"] += 1
        counts[image.split]["captions"] += len(image.raw)
    return counts


def _karpathy_splits(path: Path, notes: list[str]) -> tuple[dict[str, Any], str]:
    """The train (train + restval), val and test sizes of `path` when it is here, else the official COCO
    Karpathy split's (with a note); and the source to cite."""
    if Path(path).is_file():
        c = karpathy_counts(path)
        train = {"images": c["train"]["images"] + c["restval"]["images"],
                 "captions": c["train"]["captions"] + c["restval"]["captions"], "split": "train + restval"}
        splits = {"train": train, "val": c["val"], "test": c["test"]}
        return splits, f"counted in {path} (Karpathy's format: images[].split, images[].sentences)"
    notes.append(f"{path} not found: the official COCO Karpathy split's sizes are assumed")
    splits = {"train": {"images": KARPATHY_TRAIN_RESTVAL, "captions": KARPATHY_CAPTIONS["train+restval"],
                        "split": "train + restval"},
              "val": {"images": KARPATHY_IMAGES["val"], "captions": KARPATHY_CAPTIONS["val"]},
              "test": {"images": KARPATHY_IMAGES["test"], "captions": KARPATHY_CAPTIONS["test"]}}
    return splits, KARPATHY_SOURCE


def _datasets(cfg: RunConfig, notes: list[str]) -> tuple[dict[str, Any], int | None]:
    t = cfg.task
    sources = []
    out: dict[str, Any] = {}
    train_n: int | None = None
    if t.karpathy_file is not None:
        splits, source = _karpathy_splits(t.karpathy_file, notes)
        out.update(splits)
        sources.append(source)
        if cfg.train.train_split == "train":
            train_n = splits["train"]["images"]
    for name, path in t.coco_files.items():
        if "test2014" in Path(path).name:
            out[name] = {"images": COCO_TEST2014_IMAGES, "note": "no references (the server's split)"}
            sources.append(f"COCO test2014: {COCO_TEST2014_IMAGES:,} images (cocodataset.org)")
        else:
            out[name] = {"file": Path(path).name, "note": "size not known to the card"}
    if cfg.train.train_split != "train":
        out[cfg.train.train_split] = out.get(cfg.train.train_split, {"note": "size not known to the card"})
    return {"source": "; ".join(sources) or "not stated", **out}, train_n


def describe_caption(cfg: RunConfig, opts: CardOptions) -> CardParts:
    t = cfg.task
    notes = ["visual tower frozen, features cached (fp16 stores): only the captioner is counted"]
    if not t.feature_encoder:
        raise ValueError("card: the recipe sets no task.feature_encoder; pass one, e.g. task.feature_encoder=RN50")
    preset = t.feature_preset or "caption"
    hw, dim, how = grid_shape(t.feature_encoder, preset)
    dim *= len(t.features)
    notes.append(f"grid {hw[0]}x{hw[1]}x{dim} from {how}")
    vocab, assumed = caption_vocab_size(t.vocab, notes)
    with torch.device("meta"):
        model = build_model(t.model, t.preset, t.model_overrides, grid_dim=dim, vocab_size=vocab)
    model = materialise(model)
    length = t.max_caption_words + 1
    notes.append(f"XE rows of {length} positions (bos + {t.max_caption_words} words in, {t.max_caption_words} "
                 "words + eos out): batches pad to their longest caption, which reaches the clip")
    greedy = t.scst_baseline == "greedy"
    xe = CardPhase("xe", _xe_fn(model, hw, dim, vocab, t.seq_per_img, length), 1.0,
                   f"{t.seq_per_img} teacher-forced captions x {length} tokens an image")
    scst = CardPhase("scst", _scst_fn(model, hw, dim, t.scst_samples, t.decode_max_len, greedy, t.scst_temperature),
                     0.0, f"{t.scst_samples} sampled" + (" + 1 greedy" if greedy else "") + " caption(s) x "
                     f"{t.decode_max_len} tokens an image")
    configured = {p.name for p in cfg.phases}
    phases = [xe, scst] if configured & set(t.scst_phases) else [xe]
    if not configured:
        notes.append("no phases: the whole run is XE")
    if len(phases) == 2:
        notes.append(f"SCST: captions decoded to the maximum length of {t.decode_max_len} tokens (random weights "
                     "rarely emit eos; an upper bound), CIDEr-D reward on the CPU not counted")
    datasets, train_n = _datasets(cfg, notes)
    facts = {"model": f"{t.model}/{t.preset}", "encoder": t.feature_encoder, "grid_hw": hw, "grid_dim": dim,
             "caption_vocab": vocab, "seq_per_img": t.seq_per_img, "scst_samples": t.scst_samples,
             "scst_baseline": t.scst_baseline, "decode_max_len": t.decode_max_len}
    vocab_params = model.tgt_embed.lut.weight.numel() + sum(p.numel() for p in model.generator.parameters()) \
        if assumed and hasattr(model, "generator") else 0
    key = [facts["model"], t.model_overrides, hw, dim, vocab, t.seq_per_img, length, t.scst_samples,
           t.decode_max_len, greedy]
    return CardParts(model=model, phases=phases, facts=facts, datasets=datasets, train_samples=train_n,
                     input_bytes=hw[0] * hw[1] * dim * 2, notes=notes, embedding_params=vocab_params,
                     measure_key=key)


register_card("caption", describe_caption)

__all__ = ["COCO_WORDS", "caption_vocab_size", "describe_caption", "karpathy_counts"]
