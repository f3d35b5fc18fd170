"""Captioning one image from a checkpoint alone: no datasets, no feature store.

The checkpoint's artifacts hold the caption vocabulary and the provenance of the features the captioner was
trained on; `clipvil.apps.predict` turns the image into a grid with the same encoder and preset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from clipvil.data.tokenizers import CaptionVocab
from clipvil.engine.models import build_model
from clipvil.nn.decoding import DecodeOutput, beam_search, greedy_decode
from clipvil.types import GridFeatures


@dataclass
class CaptionResult:
    """The caption of one image and the other beams."""

    caption: str  # the best caption
    score: float  # its decoding score (summed log-probs, length-penalised for beams)
    beams: list[tuple[str, float]]  # every kept beam (caption, score), best first ([the caption] when greedy)


@dataclass
class CaptionPredictor:
    """A captioner with its vocabulary and decode settings, ready for single images."""

    model: nn.Module
    vocab: CaptionVocab
    features: dict[str, Any]  # provenance of the grids the captioner was trained on (encoder, preset, weights)
    cfg: Any  # the task's CaptionConfig (decode_max_len, beam_size, length_penalty, no_repeat_trigram)
    device: torch.device

    @classmethod
    def from_artifacts(cls, cfg: Any, artifacts: dict[str, Any], device: torch.device) -> CaptionPredictor:
        """The captioner of a caption checkpoint (weights still to be loaded into `.model`)."""
        for key in ("caption_vocab", "features"):
            if key not in artifacts:
                raise KeyError(f"the checkpoint carries no {key!r} artifact (written by an older clipvil?)")
        saved = artifacts["caption_vocab"]
        vocab = CaptionVocab(tuple(saved["words"]), int(saved["max_length"]), int(saved["count_threshold"]))
        features = artifacts["features"]
        model = build_model(cfg.model, cfg.preset, cfg.model_overrides, grid_dim=int(features["dim"]),
                            vocab_size=len(vocab))
        return cls(model.to(device).eval(), vocab, features, cfg, device)

    @torch.inference_mode()
    def caption(self, grid: GridFeatures, beam_size: int | None = None) -> CaptionResult:
        """The caption of one image grid [1, N, C] (beam_size None: the recipe's task.beam_size)."""
        beam = self.cfg.beam_size if beam_size is None else beam_size
        if beam < 1:
            raise ValueError(f"--beam-size must be >= 1, got {beam}")
        out = decode_captions(self.model, grid.to(self.device), self.vocab, self.cfg, beam)
        rows = out.beams if out.beams is not None else out
        beams = [(self.vocab.decode(t), float(s)) for t, s in zip(rows.tokens.tolist(), rows.scores.tolist())
                 if s != float("-inf")]
        return CaptionResult(self.vocab.decode(out.tokens[0].tolist()), float(out.scores[0]), beams)


def decode_captions(
    model: nn.Module, grid: GridFeatures, vocab: CaptionVocab, cfg: Any, beam_size: int
) -> DecodeOutput:
    """The best caption per image of a batch: beam search of `beam_size` (greedy for 1) with the task config's
    decode_max_len, length_penalty and no_repeat_trigram."""
    memory = model.encode(grid)
    common = {"bos": vocab.bos_id, "eos": vocab.eos_id, "max_len": cfg.decode_max_len, "pad": vocab.pad_id}
    if beam_size == 1:
        return greedy_decode(model, memory, grid.batch_size, **common)
    return beam_search(model, memory, grid.batch_size, beam_size=beam_size, length_penalty=cfg.length_penalty,
                       no_repeat_trigram=cfg.no_repeat_trigram, **common)
