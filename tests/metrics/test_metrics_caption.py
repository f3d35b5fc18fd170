"""COCO caption metrics through pycocoevalcap (needs Java), on real Karpathy-test captions."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

import pytest

from clipvil.metrics.caption import BLEU_KEYS, caption_scores, ptb_tokenize, spice_unavailable_reason
from clipvil.metrics.cider import cider_d


def _captions(shared_data: Path, n_images: int) -> dict[int, list[str]]:
    data = json.loads((shared_data / "coco-caption" / "derived" / "coco_karpathy_test_gt.json").read_text())
    captions: dict[int, list[str]] = defaultdict(list)
    for ann in data["annotations"]:
        captions[ann["image_id"]].append(ann["caption"])
    return {i: captions[i] for i in list(captions)[:n_images]}


def _held_out(captions: dict[int, list[str]], shift: int = 0) -> tuple[dict[int, str], dict[int, list[str]]]:
    """Each image's held-out human caption (shifted to another image when shift > 0) vs its references."""
    ids = list(captions)
    preds = {i: captions[ids[(k + shift) % len(ids)]][-1] for k, i in enumerate(ids)}
    return preds, {i: captions[i][:-1] for i in ids}


def test_scores_without_meteor_and_their_wiring(shared_data: Path, caplog: pytest.LogCaptureFixture) -> None:
    captions = _captions(shared_data, 60)
    preds, refs = _held_out(captions)
    with caplog.at_level(logging.WARNING, logger="clipvil.metrics.caption"):
        scores = caption_scores(preds, refs, meteor=False)
    spice = {"SPICE"} if spice_unavailable_reason() is None else set()
    assert set(scores) == {*BLEU_KEYS, "ROUGE_L", "CIDEr"} | spice
    if spice_unavailable_reason() is not None:
        assert "SPICE skipped" in caplog.text  # never downloaded, never fatal
    # CIDEr is computed on PTB tokens: our CIDEr-D on the same tokens gives the same number.
    tokens = ptb_tokenize({i: [preds[i], *refs[i]] for i in refs})
    ours, _ = cider_d({i: t[0] for i, t in tokens.items()}, {i: t[1:] for i, t in tokens.items()})
    assert scores["CIDEr"] == pytest.approx(ours, abs=1e-9)
    # Human captions of the right image beat the same captions given to the wrong image, on every metric.
    wrong = caption_scores(*_held_out(captions, shift=1), meteor=False, spice=False)
    assert all(scores[k] > wrong[k] for k in wrong)
    assert all(0.0 <= scores[k] <= 1.0 for k in (*BLEU_KEYS, "ROUGE_L"))


def test_ptb_tokenizer_lowercases_and_drops_punctuation() -> None:
    out = ptb_tokenize({"a": ["A man, riding a HORSE.", "Isn't it?"]})
    assert out == {"a": ["a man riding a horse", "is n't it"]}


def test_bad_inputs_are_named_before_any_java_runs() -> None:
    with pytest.raises(ValueError, match=r"no prediction for 1 image\(s\) \(e.g. 2\)"):
        caption_scores({1: "a"}, {1: ["a"], 2: ["b"]})
    with pytest.raises(ValueError, match="image 1: references must be a non-empty list"):
        caption_scores({1: "a"}, {1: []})
    with pytest.raises(ValueError, match="image 1: references must be a non-empty list"):
        caption_scores({1: "a"}, {1: "a dog"})
    with pytest.raises(ValueError, match="prediction for image 1: expected a string"):
        caption_scores({1: ["a"]}, {1: ["a"]})  # type: ignore[dict-item]


@pytest.mark.slow
def test_full_scores_with_meteor_perfect_and_wrong_captions(shared_data: Path) -> None:
    captions = _captions(shared_data, 40)
    # Each prediction equals both of its (identical) references: every metric is perfect.
    perfect = caption_scores({i: c[0] for i, c in captions.items()}, {i: [c[0], c[0]] for i, c in captions.items()})
    assert perfect["METEOR"] == pytest.approx(1.0) and perfect["ROUGE_L"] == pytest.approx(1.0)
    assert all(perfect[k] == pytest.approx(1.0, abs=1e-9) for k in BLEU_KEYS)
    assert perfect["CIDEr"] == pytest.approx(10.0)  # cosine 1 for every n, times 10
    right = caption_scores(*_held_out(captions), spice=False)
    wrong = caption_scores(*_held_out(captions, shift=1), spice=False)
    assert right["METEOR"] > wrong["METEOR"]
