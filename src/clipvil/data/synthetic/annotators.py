"""VQA-style human answers: ten per question, mostly the true answer, a few synonyms or slips.

Disagreement grows with difficulty but at most 3 of the 10 answers differ from the truth, so the
majority (`multiple_choice_answer`) is always the true answer and its VQA score stays 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# The 65 official VQA question types (GT-Vision-Lab/VQA, QuestionTypes/mscoco_question_types.txt), in order.
QUESTION_TYPES: tuple[str, ...] = (
    "how many",
    "is the",
    "what",
    "what color is the",
    "what is the",
    "is this",
    "is this a",
    "what is",
    "are the",
    "what kind of",
    "is there a",
    "what type of",
    "is it",
    "what are the",
    "where is the",
    "is there",
    "does the",
    "what color are the",
    "are these",
    "are there",
    "which",
    "is",
    "what is the man",
    "is the man",
    "are",
    "how",
    "does this",
    "what is on the",
    "what does the",
    "how many people are",
    "what is in the",
    "what is this",
    "do",
    "what are",
    "are they",
    "what time",
    "what sport is",
    "are there any",
    "is he",
    "what color is",
    "why",
    "where are the",
    "what color",
    "who is",
    "what animal is",
    "is the woman",
    "is this an",
    "do you",
    "how many people are in",
    "what room is",
    "has",
    "is this person",
    "what is the woman",
    "can you",
    "why is the",
    "is the person",
    "what is the color of the",
    "what is the person",
    "could",
    "was",
    "is that a",
    "what number is",
    "what is the name",
    "what brand",
    "none of the above",
)

# What a careless or differently-spoken annotator writes instead of the true answer.
_SLIPS: dict[str, tuple[str, ...]] = {
    "red": ("dark red", "orange"),
    "orange": ("red", "yellow"),
    "yellow": ("gold", "orange"),
    "green": ("dark green", "lime"),
    "blue": ("navy", "light blue"),
    "purple": ("violet", "pink"),
    "white": ("gray", "silver"),
    "black": ("dark gray", "gray"),
    "circle": ("round", "oval"),
    "square": ("rectangle", "box"),
    "triangle": ("pyramid", "triangular"),
    "diamond": ("rhombus", "kite"),
    "star": ("pentagram", "starfish"),
    "cross": ("plus", "x"),
    "yes": ("no",),
    "no": ("yes",),
    "left": ("right",),
    "right": ("left",),
    "above": ("below",),
    "below": ("above",),
}
MAX_DISAGREE = 3


def question_type(question: str, where: str = "question") -> str:
    """The longest official question type whose words start the question (so it is always a prefix)."""
    words = question.lower().rstrip("?").split()
    best = ""
    for qt in QUESTION_TYPES:
        parts = qt.split()
        if words[: len(parts)] == parts and len(qt) > len(best):
            best = qt
    if not best:
        raise ValueError(f"{where}: no official VQA question type starts {question!r}")
    return best


def _slip(answer: str, rng: np.random.Generator) -> str:
    if answer.isdigit():
        n = int(answer)
        return str(n + 1 if n == 0 or rng.random() < 0.5 else n - 1)
    options = _SLIPS.get(answer, (answer,))
    return str(options[int(rng.integers(len(options)))])


def human_answers(answer: str, difficulty: float, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Ten {answer, answer_confidence, answer_id} records: at most 3 slips, the rest the true answer."""
    p_slip = 0.02 + 0.18 * difficulty
    wrong = min(int(rng.binomial(10, p_slip)), MAX_DISAGREE)
    slots = set(rng.permutation(10)[:wrong].tolist())
    out = []
    for k in range(10):
        if k in slots:
            given = _slip(answer, rng)
            confidence = ("maybe", "no", "yes")[int(rng.choice(3, p=[0.5, 0.3, 0.2]))]
        else:
            given = answer
            confidence = "yes" if rng.random() < 0.85 else "maybe"
        out.append({"answer": given, "answer_confidence": confidence, "answer_id": k + 1})
    return out
