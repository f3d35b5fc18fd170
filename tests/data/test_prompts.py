"""Zero-shot prompt texts: the VQA "[question] [answer]" templates and class prompts."""

from __future__ import annotations

import pytest

from clipvil.data.prompts import (
    VQA_TEMPLATES,
    class_prompts,
    resolve_template,
    uses_question,
    vqa_candidate_batch,
    vqa_candidates,
    vqa_prompt,
)


def test_named_templates() -> None:
    q, a = "What colour is the circle?", "red"
    assert vqa_prompt(q, a) == "question: What colour is the circle? answer: red"
    assert vqa_prompt(q, a, "plain") == "What colour is the circle? red"
    assert vqa_prompt(q, a, "answer") == "red"
    assert vqa_prompt(q, a, "photo") == "a photo of red."
    assert set(VQA_TEMPLATES) == {"qa", "plain", "answer", "photo"}


def test_whitespace_is_collapsed() -> None:
    assert vqa_prompt("  how many\tstars? ", " 2 ", "plain") == "how many stars? 2"


def test_custom_template_and_validation() -> None:
    assert vqa_prompt("is it red?", "yes", "Q: {question} A: {answer}") == "Q: is it red? A: yes"
    assert resolve_template("qa") == "question: {question} answer: {answer}"
    with pytest.raises(ValueError, match=r"needs an \{answer\} field"):
        resolve_template("{question} only")
    with pytest.raises(ValueError, match=r"got \['answer', 'colour'\]"):
        resolve_template("{answer} {colour}")
    with pytest.raises(ValueError, match="not a valid format string"):
        resolve_template("{answer")


def test_candidates_per_question_and_shared() -> None:
    answers = ["red", "blue"]
    assert vqa_candidates("what colour?", answers, "plain") == ["what colour? red", "what colour? blue"]
    assert vqa_candidate_batch(["q1?", "q2?"], answers, "qa") == [
        ["question: q1? answer: red", "question: q1? answer: blue"],
        ["question: q2? answer: red", "question: q2? answer: blue"],
    ]
    assert uses_question("qa") and not uses_question("photo")
    assert vqa_candidate_batch(["q1?", "q2?"], answers, "photo") == [["a photo of red.", "a photo of blue."]]
    with pytest.raises(TypeError, match="not one string"):
        vqa_candidates("q?", "red")


def test_class_prompts() -> None:
    assert class_prompts(["red circle", "star"]) == ["a photo of a red circle.", "a photo of a star."]
    assert class_prompts(["cat"], "itap of a {}.") == ["itap of a cat."]
    with pytest.raises(ValueError, match="no '{}' field"):
        class_prompts(["cat"], "a photo")
