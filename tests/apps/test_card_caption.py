"""The captioning card: XE then SCST as the recipe's phases split the run, against facts derived by hand (the
Karpathy split's size, the recipe's epochs and phase start, the vocabulary assumption, FLOPs of the output layer
as a lower bound). The captioner is shrunk to its tiny preset so the measured steps are quick."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipvil.apps.card import make_card
from clipvil.apps.card_caption import COCO_WORDS

REPO = Path(__file__).resolve().parents[2]
TINY = ["task.preset=tiny"]  # d_model 32, 2 + 2 layers


def test_caption_card_phases_and_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    card = make_card("configs/caption/transformer_rn50.yaml", TINY)
    d = json.loads(json.dumps(card.to_dict()))
    vocab = COCO_WORDS + 4
    assert d["facts"]["grid_hw"] == [14, 14] and d["facts"]["grid_dim"] == 2048  # 448 // 32; RN50 layer4 width
    assert d["facts"]["caption_vocab"] == vocab == 9_490
    per_epoch = 113_287 // 10  # Karpathy train + restval images at batch 10
    assert d["updates"] == 40 * per_epoch == 453_120
    xe, scst = d["phases"]
    assert (xe["name"], xe["updates"], scst["name"], scst["updates"]) == ("xe", 15 * per_epoch, "scst",
                                                                          25 * per_epoch)
    assert xe["share"] == pytest.approx(15 / 40) and scst["share"] == pytest.approx(25 / 40)
    # the vocabulary-sized parts: word embedding V x 32, output layer 32 x V + V
    assert d["embedding_params"] == vocab * 32 * 2 + vocab
    # XE: 5 rows x 17 positions through the output layer: forward 2*85*32*V, backward grad-input + grad-weight
    assert xe["cost"]["flops"] >= 3 * 2 * 85 * 32 * vocab
    # SCST: 6 decoded rows x 20 steps forward (5 samples + greedy), and the 5 samples' backward (2x)
    assert scst["cost"]["flops"] >= 2 * 120 * 32 * vocab + 2 * 2 * 100 * 32 * vocab
    assert d["total_flops"] == 10 * (15 * per_epoch * xe["cost"]["flops"] + 25 * per_epoch * scst["cost"]["flops"])
    assert d["flops_per_sample"] == int(15 / 40 * xe["cost"]["flops"] + 25 / 40 * scst["cost"]["flops"])
    assert [o for p in d["phases"] for o in p["optimizers"]] == ["main: adam", "main: adam"]
    assert d["datasets"]["train"]["images"] == 113_287 and d["datasets"]["test2014"]["images"] == 40_775
    assert d["paper"]["reproduces"] is None and "2.1%" in d["paper"]["note"]
    assert any("9,490 ids assumed" in n for n in d["assumptions"])
    assert any("upper bound" in n for n in d["assumptions"])
    # data/coco/dataset_coco.json is not in the checkout: the official sizes, and a note saying so
    assert "Karpathy & Fei-Fei" in d["datasets"]["source"]
    assert any("dataset_coco.json not found" in n and "official" in n for n in d["assumptions"])


def test_a_vocabulary_file_sets_the_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clipvil.data.tokenizers import CaptionVocab

    monkeypatch.chdir(REPO)
    path = tmp_path / "caption_vocab.json"
    CaptionVocab.build([["a", "cat"]] * 6 + [["a", "dog"]] * 6, 5, 16).save(path)  # 3 words seen > 5 times
    card = make_card("configs/caption/transformer_rn50.yaml", [*TINY, f"task.vocab={path}", "phases=[]"])
    assert card.facts["caption_vocab"] == 4 + 3 and card.embedding_params == 0  # no assumption to flag
    assert [p.name for p in card.phases] == ["xe"] and card.phases[0].updates == card.updates


def _karpathy_file(path: Path, splits: list[tuple[str, int]]) -> Path:
    """A dataset_coco.json in Karpathy's format: one image per (split, number of sentences)."""
    images = []
    for i, (split, n) in enumerate(splits):
        sentences = [{"raw": f"A shape number {j}.", "tokens": ["a", "shape", "number", str(j)],
                      "imgid": i, "sentid": 10 * i + j} for j in range(n)]
        images.append({"filepath": "images", "filename": f"{i:06d}.png", "cocoid": 100 + i, "imgid": i,
                       "split": split, "sentids": [s["sentid"] for s in sentences], "sentences": sentences})
    path.write_text(json.dumps({"dataset": "coco", "images": images}))
    return path


def test_a_karpathy_file_here_gives_its_own_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """3 train + 2 restval images train (5 images; 5+5+4 + 5+3 = 22 captions), 1 val (5), 2 test (5 + 1); at
    batch 2 that is 5 // 2 = 2 updates an epoch: 40 epochs, XE for the first 15, SCST after."""
    monkeypatch.chdir(REPO)
    path = _karpathy_file(tmp_path / "dataset_coco.json", [("train", 5), ("train", 5), ("train", 4),
                                                          ("restval", 5), ("restval", 3), ("val", 5),
                                                          ("test", 5), ("test", 1)])
    card = make_card("configs/caption/transformer_rn50.yaml", [*TINY, f"task.karpathy_file={path}",
                                                               "train.batch_size=2"])
    ds = card.datasets
    assert (ds["train"]["images"], ds["train"]["captions"]) == (5, 22)
    assert (ds["val"]["images"], ds["val"]["captions"], ds["test"]["images"], ds["test"]["captions"]) == (1, 5, 2, 6)
    assert str(path) in ds["source"] and "Karpathy & Fei-Fei" not in ds["source"]
    assert ds["test2014"]["images"] == 40_775 and "cocodataset.org" in ds["source"]  # the server split, still
    assert card.updates == 40 * 2 and [p.updates for p in card.phases] == [15 * 2, 25 * 2]
    assert not any("not found" in n for n in card.assumptions)
