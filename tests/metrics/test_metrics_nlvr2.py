"""NLVR2 accuracy / consistency: hand-made cases, the real dev file with chosen flips, a port of the official
metrics.py, and the two prediction file formats."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from clipvil.metrics.nlvr2 import (
    consistency_key,
    labels_from_rows,
    nlvr2_scores,
    read_nlvr2_predictions,
)


def _official(predictions: dict[str, str], rows: list[dict]) -> tuple[float, float]:
    """A port of lil-lab/nlvr nlvr2/eval/metrics.py (predictions as the CSV's strings; fractions)."""
    correct, groups = 0, {}
    for example in rows:
        fields = example["identifier"].split("-")
        fields[2] = ""
        key = "-".join(fields)
        groups.setdefault(key, True)
        if predictions[example["identifier"]].lower() == example["label"].lower():
            correct += 1
        else:
            groups[key] = False
    return correct / len(rows), sum(groups.values()) / len(groups)


def _dev_rows(shared_data: Path) -> list[dict]:
    return [json.loads(line) for line in (shared_data / "nlvr2" / "dev.json").read_text().splitlines() if line]


def test_hand_made() -> None:
    labels = {
        "dev-1-0-0": True, "dev-1-1-0": False, "dev-1-2-0": True,  # sentence dev-1--0: 3 pairs
        "dev-1-0-1": False, "dev-1-3-1": False,  # sentence dev-1--1
        "dev-2-0-0": True,  # sentence dev-2--0
    }
    predictions = dict(labels)
    predictions["dev-1-1-0"] = True  # one error in dev-1--0
    predictions["dev-2-0-0"] = False  # the only example of dev-2--0 wrong
    scores = nlvr2_scores(predictions, labels)
    # accuracy 4 right of 6; consistent: only dev-1--1 of 3 sentences
    assert scores.accuracy == pytest.approx(100 * 4 / 6)
    assert scores.consistency == pytest.approx(100 / 3)
    assert (scores.n_examples, scores.n_correct, scores.n_groups, scores.n_consistent) == (6, 4, 3, 1)
    assert nlvr2_scores(labels, labels).to_dict()["consistency"] == 100.0


def test_consistency_key_is_the_official_one() -> None:
    assert consistency_key("dev-850-2-0") == "dev-850--0"
    assert consistency_key("test1-0-1-1") == "test1-0--1"
    with pytest.raises(ValueError, match="fewer than 3"):
        consistency_key("dev-1")


def test_real_dev_with_chosen_flips(shared_data: Path) -> None:
    rows = _dev_rows(shared_data)
    labels = labels_from_rows(rows)
    assert len(labels) == 6982
    # sentences: (set id, sentence id) pairs, counted here from the raw identifiers
    n_sentences = len({(r["identifier"].split("-")[1], r["identifier"].split("-")[3]) for r in rows})
    # dev-850-0-0 and dev-850-2-0 are two pairs of one sentence (lines 1-2); dev-896-0-1 is another sentence
    flips = {"dev-850-0-0", "dev-850-2-0", "dev-896-0-1"}
    assert rows[0]["identifier"] == "dev-850-0-0" and rows[1]["identifier"] == "dev-850-2-0"
    assert rows[0]["sentence"] == rows[1]["sentence"]
    predictions = {k: (not v) if k in flips else v for k, v in labels.items()}
    scores = nlvr2_scores(predictions, labels)
    assert scores.n_groups == n_sentences
    assert scores.accuracy == pytest.approx(100 * (6982 - 3) / 6982)
    assert scores.consistency == pytest.approx(100 * (n_sentences - 2) / n_sentences)


def test_matches_the_official_script_on_random_predictions(shared_data: Path) -> None:
    rows = _dev_rows(shared_data)
    rng = random.Random(0)
    strings = {r["identifier"]: rng.choice(["True", "False", "true"]) if rng.random() < 0.3 else r["label"]
               for r in rows}
    accuracy, consistency = _official(strings, rows)
    scores = nlvr2_scores({k: v.lower() == "true" for k, v in strings.items()}, labels_from_rows(rows))
    assert scores.accuracy == pytest.approx(100 * accuracy)
    assert scores.consistency == pytest.approx(100 * consistency)


def test_missing_unknown_and_subset() -> None:
    labels = {"dev-1-0-0": True, "dev-1-1-0": False, "dev-2-0-0": True}
    with pytest.raises(ValueError, match=r"no prediction for 1 example\(s\) \(e.g. 'dev-2-0-0'\)"):
        nlvr2_scores({"dev-1-0-0": True, "dev-1-1-0": False}, labels)
    with pytest.raises(ValueError, match=r"1 prediction\(s\) for unknown example\(s\) \(e.g. 'dev-7-0-0'\)"):
        nlvr2_scores({**labels, "dev-7-0-0": True}, labels)
    with pytest.raises(ValueError, match="dev-7-0-0"):
        nlvr2_scores({"dev-1-0-0": True, "dev-7-0-0": True}, labels, subset=True)
    # subset: only the predicted examples count; dev-1-1-0 wrong -> group dev-1--0 inconsistent
    scores = nlvr2_scores({"dev-1-0-0": True, "dev-1-1-0": True}, labels, subset=True)
    assert (scores.accuracy, scores.consistency, scores.n_examples, scores.n_groups) == (50.0, 0.0, 2, 1)
    # allow_extra: full-dev predictions scored on a subset of the labels
    scores = nlvr2_scores({**labels, "dev-7-0-0": False}, {"dev-2-0-0": True}, allow_extra=True)
    assert (scores.accuracy, scores.n_examples) == (100.0, 1)
    with pytest.raises(ValueError, match="no example to score"):
        nlvr2_scores({}, labels, subset=True)
    with pytest.raises(ValueError, match=r"prediction for dev-1-0-0: 'maybe' is not True or False"):
        nlvr2_scores({**labels, "dev-1-0-0": "maybe"}, labels)  # type: ignore[dict-item]


def test_balanced_subset_with_dev_predictions(shared_data: Path) -> None:
    dev = labels_from_rows(_dev_rows(shared_data))
    balanced_rows = [json.loads(x) for x in (shared_data / "nlvr2" / "balanced_dev.json").read_text().splitlines()
                     if x]
    balanced = labels_from_rows(balanced_rows)
    always_true = {k: True for k in dev}
    # the balanced subset has as many true as false labels, so "always true" scores exactly 50 %
    assert nlvr2_scores(always_true, balanced, allow_extra=True).accuracy == 50.0
    with pytest.raises(ValueError, match="unknown example"):
        nlvr2_scores(always_true, balanced)


def test_prediction_files(tmp_path: Path) -> None:
    csv_path = tmp_path / "predictions.csv"
    csv_path.write_text("dev-1-0-0,True\ndev-1-1-0,false\n\ndev-2-0-0,TRUE\n")
    assert read_nlvr2_predictions(csv_path) == {"dev-1-0-0": True, "dev-1-1-0": False, "dev-2-0-0": True}
    json_path = tmp_path / "predictions.json"
    json_path.write_text(json.dumps([{"identifier": "dev-1-0-0", "prediction": "False"},
                                     {"identifier": "dev-1-1-0", "prediction": True}]))
    assert read_nlvr2_predictions(json_path) == {"dev-1-0-0": False, "dev-1-1-0": True}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dev-1-0-0,True\ndev-1-1-0\n", r"line 2: expected 'identifier,prediction', got 1 field"),
        ("dev-1-0-0,True\ndev-1-0-0,False\n", r"line 2: duplicate identifier dev-1-0-0"),
        ("dev-1-0-0,yes\n", r"line 1: prediction for dev-1-0-0: 'yes' is not True or False"),
        ('[{"identifier": "dev-1-0-0"}]', r"entry 0: needs the fields \['identifier', 'prediction'\]"),
        ('[{"identifier": 3, "prediction": true}]', r"entry 0: the identifier must be a non-empty string"),
        ("[1, ", r"invalid JSON at line 1"),
    ],
)
def test_prediction_file_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "predictions.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_nlvr2_predictions(path)
    with pytest.raises(FileNotFoundError):
        read_nlvr2_predictions(tmp_path / "absent.csv")
