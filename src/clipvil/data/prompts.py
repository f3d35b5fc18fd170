"""Text prompts for zero-shot CLIP: the "[question] [answer]" candidates of zero-shot VQA (the paper's
Table 7, with and without a template) and single-label prompts for zero-shot classification.

A template is one of the names of `VQA_TEMPLATES` or a format string of its own with an ``{answer}`` field
and optionally a ``{question}`` field (no other fields). Templates without ``{question}`` give one candidate
set shared by every question (text embeddings [A, D] instead of [B, A, D] for
`clipvil.metrics.zero_shot`). For ImageNet-style class prompts open_clip ships the OpenAI templates
(``open_clip.zero_shot_metadata.OPENAI_IMAGENET_TEMPLATES``) and ``open_clip.build_zero_shot_classifier``.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

VQA_TEMPLATES: dict[str, str] = {
    "qa": "question: {question} answer: {answer}",  # the question and answer marked as such
    "plain": "{question} {answer}",  # no template: the question followed by the answer
    "answer": "{answer}",  # the answer alone (ignores the question)
    "photo": "a photo of {answer}.",  # CLIP's classification prompt over the answers (ignores the question)
}
_FIELDS = {"question", "answer"}


def resolve_template(template: str) -> str:
    """The format string of a template name, or `template` itself when it is a valid format string."""
    text = VQA_TEMPLATES.get(template, template)
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as err:
        raise ValueError(f"prompt template {template!r}: not a valid format string ({err})") from None
    if "answer" not in fields or fields - _FIELDS:
        raise ValueError(
            f"prompt template {template!r}: needs an {{answer}} field and only {{question}} / {{answer}} "
            f"(got {sorted(fields)}); or use one of {sorted(VQA_TEMPLATES)}"
        )
    return text


def uses_question(template: str) -> bool:
    """Whether the template's text depends on the question (candidates per question vs shared)."""
    return "{question}" in resolve_template(template)


def vqa_prompt(question: str, answer: str, template: str = "qa") -> str:
    """One candidate text, e.g. "question: what colour is the circle? answer: red" (whitespace collapsed)."""
    text = resolve_template(template).format(
        question=" ".join(question.split()), answer=" ".join(answer.split())
    )
    return " ".join(text.split())


def vqa_candidates(question: str, answers: Sequence[str], template: str = "qa") -> list[str]:
    """The candidate texts of one question, one per answer, in the answers' order."""
    if isinstance(answers, str):
        raise TypeError("vqa_candidates: answers must be a list of strings, not one string")
    return [vqa_prompt(question, a, template) for a in answers]


def vqa_candidate_batch(
    questions: Sequence[str], answers: Sequence[str], template: str = "qa"
) -> list[list[str]]:
    """[B][A] candidate texts: every question joined with every answer (one row of one set when the
    template ignores the question — encode it once and score with a shared [A, D])."""
    if not uses_question(template):
        return [vqa_candidates("", answers, template)]
    return [vqa_candidates(q, answers, template) for q in questions]


def class_prompts(names: Sequence[str], template: str = "a photo of a {}.") -> list[str]:
    """One prompt per class name, e.g. "a photo of a red circle." (a ``{}`` field takes the name)."""
    if "{}" not in template:
        raise ValueError(f"class prompt template {template!r} has no '{{}}' field for the class name")
    return [template.format(n) for n in names]


__all__ = [
    "VQA_TEMPLATES",
    "class_prompts",
    "resolve_template",
    "uses_question",
    "vqa_candidate_batch",
    "vqa_candidates",
    "vqa_prompt",
]
