"""SNLI-VE reader: the real AllenNLP sample, the official field spelling, '-' labels, errors."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest

from clipvil.data import SNLI_VE_LABELS, DataFormatError, flickr30k_image_filename, read_snli_ve


def _pair(pair_id: str = "1.jpg#0r1e", label: str = "entailment", **extra: object) -> dict:
    """A line in the official layout (Flikr30kID with the .jpg suffix)."""
    return {
        "Flikr30kID": "1.jpg",
        "pairID": pair_id,
        "captionID": "1.jpg#0",
        "gold_label": label,
        "annotator_labels": [label],
        "sentence1": "Two dogs run.",
        "sentence2": "Animals move.",
        **extra,
    }


def _jsonl(write_json, name: str, *lines: dict | str) -> Path:
    return write_json(name, "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")


def test_real_sample(shared_data: Path) -> None:
    path = shared_data / "allennlp-models" / "visual_entailment" / "sample_pairs.jsonl"
    raw = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    split = read_snli_ve(path)
    assert len(split.pairs) == len(raw) == 16 and split.no_consensus == 0 and split.warnings == {}
    assert Counter(p.label for p in split.pairs) == Counter(r["gold_label"] for r in raw)
    first = split.pairs[0]
    assert (first.pair_id, first.image_id, first.label) == (
        "2248275918.jpg#2r1c",
        "2248275918",
        "contradiction",
    )
    assert first.hypothesis == raw[0]["sentence2"] and first.premise == raw[0]["sentence1"]
    images = shared_data / "allennlp-models" / "images" / "visual_entailment"
    assert all((images / flickr30k_image_filename(p.image_id)).is_file() for p in split.pairs)
    # label indices follow SNLI_VE_LABELS (UNITER / CLIP-ViL order)
    assert SNLI_VE_LABELS == ("contradiction", "entailment", "neutral")
    assert [p.label_index for p in split.pairs[:3]] == [0, 2, 1]


def test_official_field_spelling_and_image_set(write_json) -> None:
    path = _jsonl(write_json, "snli_ve_dev.jsonl", _pair(), _pair("1.jpg#0r1n", "neutral", Flickr30K_ID="1"))
    split = read_snli_ve(path, image_ids={"1"})
    assert [(p.image_id, p.label) for p in split.pairs] == [("1", "entailment"), ("1", "neutral")]


def test_no_consensus_labels_are_counted_and_left_out(write_json, caplog: pytest.LogCaptureFixture) -> None:
    path = _jsonl(
        write_json, "snli_ve_train.jsonl", _pair(), _pair("1.jpg#0r1c", "-"), _pair("1.jpg#0r1n", "-")
    )
    with caplog.at_level(logging.WARNING, logger="clipvil.data"):
        split = read_snli_ve(path)
    assert [p.pair_id for p in split.pairs] == ["1.jpg#0r1e"]
    assert split.no_consensus == 2
    assert split.warnings == {"no-consensus gold label '-' (pair left out)": 2}
    assert (
        "2 x no-consensus gold label '-' (pair left out) (e.g. pair 1.jpg#0r1c, pair 1.jpg#0r1n)"
        in caplog.text
    )
    kept = read_snli_ve(path, keep_no_consensus=True)
    assert [(p.label, p.label_index) for p in kept.pairs] == [("entailment", 1), (None, None), (None, None)]
    assert kept.no_consensus == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (_pair(gold_label="maybe"), "line 2: pair 1.jpg#0r1e: unknown gold_label 'maybe'"),
        (_pair(sentence2=" "), "line 2: pair 1.jpg#0r1e: empty hypothesis (sentence2)"),
        (
            {k: v for k, v in _pair().items() if k != "sentence2"},
            "line 2: pair 1.jpg#0r1e: missing field 'sentence2'",
        ),
        (
            {k: v for k, v in _pair().items() if k != "Flikr30kID"},
            "line 2: pair 1.jpg#0r1e: missing field 'Flikr30kID' (or 'Flickr30K_ID')",
        ),
        (
            _pair(Flickr30K_ID="2"),
            "line 2: pair 1.jpg#0r1e: image fields disagree: Flikr30kID -> 1, Flickr30K_ID -> 2",
        ),
        ({k: v for k, v in _pair().items() if k != "pairID"}, "line 2: missing field 'pairID'"),
        ('{"pairID": "x", ', "line 2: invalid JSON at column 17"),
        (
            _pair("0.jpg#0r1e"),
            "line 2: pair 0.jpg#0r1e: duplicate pairID '0.jpg#0r1e' (at line 2; first at line 1)",
        ),
    ],
)
def test_errors_name_file_line_and_pair(write_json, line: dict | str, message: str) -> None:
    path = _jsonl(write_json, "ve.jsonl", _pair("0.jpg#0r1e"), line)
    with pytest.raises(DataFormatError) as info:
        read_snli_ve(path)
    assert str(info.value).startswith(f"{path}: {message}")


def test_unknown_image(write_json) -> None:
    path = _jsonl(write_json, "ve.jsonl", _pair())
    with pytest.raises(DataFormatError, match=r"ve\.jsonl: line 1: pair 1\.jpg#0r1e: unknown image id '1'"):
        read_snli_ve(path, image_ids={"2"})
