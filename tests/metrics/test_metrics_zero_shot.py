"""Zero-shot candidate scoring on a toy vocabulary whose word vectors make the answers obvious by hand."""

from __future__ import annotations

import numpy as np
import pytest

from clipvil.metrics.vqa import VqaReference, vqa_accuracy
from clipvil.metrics.zero_shot import zero_shot_answers, zero_shot_predict, zero_shot_scores

# Toy "CLIP": 4 dimensions (red, blue, circle, square); a text embeds as the sum of its word vectors,
# an image as the sum of what it shows. Question words carry a small shared vector.
WORDS = {
    "red": [1.0, 0, 0, 0],
    "blue": [0, 1.0, 0, 0],
    "circle": [0, 0, 1.0, 0],
    "square": [0, 0, 0, 1.0],
    "what": [0.1, 0.1, 0.1, 0.1],
}


def embed(text: str) -> np.ndarray:
    return np.sum([WORDS[w] for w in text.split() if w in WORDS], axis=0)


IMAGES = np.array([embed("red circle"), embed("blue square"), embed("blue circle")])  # [3, 4]
QUESTIONS = ["what colour", "what shape", "what colour"]
ANSWERS = ["red", "blue", "circle", "square"]


def test_per_question_candidates_pick_the_matching_answer() -> None:
    text = np.array([[embed(f"{q} {a}") for a in ANSWERS] for q in QUESTIONS])  # [3, 4, 4]
    # image 0 (red circle): "red" and "circle" tie after normalisation -> lowest index, "red"
    # image 1 (blue square), image 2 (blue circle): "blue" (index 1) ties with its shape and wins on index
    assert zero_shot_predict(IMAGES, text).tolist() == [0, 1, 1]
    assert zero_shot_answers(IMAGES, text, [ANSWERS] * 3) == ["red", "blue", "blue"]


def test_shared_candidate_set_scores_are_cosines() -> None:
    text = np.array([embed(a) for a in ANSWERS])  # [4, 4]: one-hot rows
    scores = zero_shot_scores(IMAGES, text)  # [3, 4]
    s = 1 / np.sqrt(2)  # each image is two one-hot words: cosine with either is 1/sqrt(2)
    np.testing.assert_allclose(scores, [[s, 0, s, 0], [0, s, 0, s], [0, s, s, 0]])
    assert zero_shot_answers(IMAGES, text, ANSWERS) == ["red", "blue", "blue"]


def test_normalisation_matters() -> None:
    image = np.array([[1.0, 0.0]])
    text = np.array([[1.0, 0.0], [3.0, 3.0]])  # the long vector wins on dot product, loses on cosine
    assert zero_shot_predict(image, text).tolist() == [0]
    assert zero_shot_predict(image, text, normalize=False).tolist() == [1]


def test_answers_feed_vqa_accuracy() -> None:
    """The chosen strings score with the official VQA accuracy (ten humans each answered the shown answer)."""
    text = np.array([embed(a) for a in ANSWERS])
    answers = zero_shot_answers(IMAGES, text, ANSWERS)
    refs = {
        i: VqaReference((gold,) * 10, "what color is the", "other")
        for i, gold in enumerate(["red", "blue", "circle"])
    }
    out = vqa_accuracy(dict(enumerate(answers)), refs)
    assert out.overall == pytest.approx(200 / 3)  # red, blue right; blue for a "circle" question wrong


@pytest.mark.parametrize(
    ("image", "text", "message"),
    [
        (np.zeros(4), np.zeros((2, 4)), r"image embeddings must be \[B, D\]"),
        (np.ones((2, 4)), np.ones((3, 5, 4)), r"must be \[B, A, D\] or \[A, D\] with B=2, D=4"),
        (np.ones((2, 4)), np.ones((5, 3)), "got shape"),
        (np.ones((1, 2)), np.zeros((2, 2)), "all zeros"),
        (np.ones((1, 2)), np.ones((0, 2)), "no candidates"),
        (np.array([[np.inf, 0.0]]), np.ones((2, 2)), "finite"),
    ],
)
def test_bad_shapes(image: np.ndarray, text: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        zero_shot_scores(image, text)


def test_candidate_strings_must_align() -> None:
    text = np.ones((2, 3, 2))
    with pytest.raises(ValueError, match="image 1 has 2 candidate strings for 3 embeddings"):
        zero_shot_answers(np.ones((2, 2)), text, [["a", "b", "c"], ["a", "b"]])
    with pytest.raises(ValueError, match="1 candidate lists for 2 images"):
        zero_shot_answers(np.ones((2, 2)), text, [["a", "b", "c"]])
