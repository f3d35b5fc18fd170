"""Answer vocabularies and soft-score targets for VQA-style classification heads.

Vocabulary files (the released ``trainval_ans2label.json`` / ``trainval_label2ans.json`` of LXMERT and CLIP-ViL:
3129 VQA v2 answers, 1842 GQA answers) are a dict answer -> label and a list label -> answer; both are read
and must agree exactly.

Building a VQA vocabulary follows the rule behind those 3129 answers (bottom-up-attention-vqa's
``compute_softscore.py``, reused by LXMERT and CLIP-ViL): normalise each question's ``multiple_choice_answer``
with the official VQA normalisation, count the distinct questions each normalised answer is the
multiple-choice answer of, over train + val, and keep answers with at least ``min_count`` (9) questions.
The empty string is a legitimate entry (answers such as "the" normalise to it; the released vocabulary has it).

Targets: each question's human answers are normalised, counted, and every answer in the vocabulary gets the
official accuracy of predicting it (`clipvil.common.vqa_text.vqa_soft_score`: 1 match -> 0.3, 2 -> 0.6,
3 -> 0.9, 4+ -> 1.0). Human answers outside the vocabulary are dropped from the target and counted in
`TargetStats` (and logged). Targets are sparse (`SoftTarget`: label indices + scores); `dense_targets`
stacks them into a [B, n_answers] tensor for BCE.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch

from clipvil.common.vqa_text import normalize_answer, vqa_soft_score
from clipvil.data.validate import PathLike, error, expect_type, load_json
from clipvil.data.vqa import VqaExample

logger = logging.getLogger("clipvil.data")
VQA_MIN_COUNT = 9  # questions an answer must be the multiple-choice answer of (3129 answers on train+val)


@dataclass(frozen=True)
class AnswerVocab:
    """Answers in label order; `ans2label` is the inverse of `label2ans`."""

    label2ans: tuple[str, ...]
    ans2label: dict[str, int]

    @classmethod
    def from_answers(cls, answers: Sequence[str]) -> AnswerVocab:
        """A vocabulary whose label i is answers[i]; duplicates are an error."""
        ans2label: dict[str, int] = {}
        for i, a in enumerate(answers):
            if a in ans2label:
                raise ValueError(f"AnswerVocab: answer {a!r} at labels {ans2label[a]} and {i}")
            ans2label[a] = i
        return cls(tuple(answers), ans2label)

    def __len__(self) -> int:
        return len(self.label2ans)

    def __contains__(self, answer: object) -> bool:
        return answer in self.ans2label

    def save(self, ans2label_path: PathLike, label2ans_path: PathLike) -> None:
        """Writes the two files in the released format."""
        Path(ans2label_path).write_text(json.dumps(self.ans2label), encoding="utf-8")
        Path(label2ans_path).write_text(json.dumps(list(self.label2ans)), encoding="utf-8")


def load_answer_vocab(ans2label_path: PathLike, label2ans_path: PathLike) -> AnswerVocab:
    """Reads a released vocabulary pair; an error unless the dict and the list describe the same labels."""
    a_path, l_path = Path(ans2label_path), Path(label2ans_path)
    ans2label = expect_type(load_json(a_path), dict, a_path, None, "ans2label")
    label2ans = expect_type(load_json(l_path), list, l_path, None, "label2ans")
    for i, ans in enumerate(label2ans):
        expect_type(ans, str, l_path, f"label {i}", "answer")
    for ans, label in ans2label.items():
        expect_type(label, int, a_path, f"answer {ans!r}", "label")
        if not 0 <= label < len(label2ans) or label2ans[label] != ans:
            got = label2ans[label] if 0 <= label < len(label2ans) else "out of range"
            raise error(a_path, f"answer {ans!r}", f"label {label} is {got!r} in {l_path}")
    if len(ans2label) != len(label2ans):
        missing = [a for a in label2ans if a not in ans2label]
        raise error(
            a_path,
            None,
            f"{len(ans2label)} answers but {l_path} has {len(label2ans)}; missing here: {missing[:10]}",
        )
    return AnswerVocab(tuple(label2ans), dict(ans2label))


def build_vqa_answer_vocab(examples: Iterable[VqaExample], min_count: int = VQA_MIN_COUNT) -> AnswerVocab:
    """The VQA rule: normalised multiple-choice answers of at least `min_count` distinct questions.

    Order: most questions first, ties alphabetical (deterministic; the released files use another order,
    so a model trained with them must keep using them).
    """
    questions_of: dict[str, set[int]] = {}
    cache: dict[str, str] = {}  # raw -> normalised (few distinct answers, normalising is slow)
    for ex in examples:
        raw = ex.multiple_choice_answer
        if raw is None:
            raise ValueError(
                f"build_vqa_answer_vocab: question {ex.question_id} has no answers (a test split?)"
            )
        norm = cache.get(raw)
        if norm is None:
            norm = cache[raw] = normalize_answer(raw)
        questions_of.setdefault(norm, set()).add(ex.question_id)
    counts = {a: len(q) for a, q in questions_of.items() if len(q) >= min_count}
    return AnswerVocab.from_answers(sorted(counts, key=lambda a: (-counts[a], a)))


def build_answer_vocab(answers: Iterable[str], min_count: int = 1) -> AnswerVocab:
    """Answers (used as given, e.g. GQA's) seen at least `min_count` times; most frequent first, ties alphabetical."""
    counts = Counter(answers)
    kept = [a for a, n in counts.items() if n >= min_count]
    return AnswerVocab.from_answers(sorted(kept, key=lambda a: (-counts[a], a)))


@dataclass(slots=True)
class SoftTarget:
    """Sparse target of one question: vocabulary labels and their scores (same length, labels ascending)."""

    labels: tuple[int, ...]
    scores: tuple[float, ...]


@dataclass
class TargetStats:
    """What building targets left out (all counts; nothing is dropped without being counted here)."""

    n_questions: int = 0
    n_human_answers: int = 0
    n_dropped_answers: int = 0  # human answers whose normalised text is not in the vocabulary
    n_empty_targets: int = 0  # questions none of whose answers is in the vocabulary (all-zero target)
    dropped: Counter[str] = field(default_factory=Counter)  # normalised answer -> times dropped

    def log(self) -> None:
        """One WARNING line on the clipvil.data logger when anything was dropped."""
        if self.n_dropped_answers:
            top = ", ".join(f"{a!r} x{n}" for a, n in self.dropped.most_common(5))
            logger.warning(
                "answer targets: %d of %d human answers not in the vocabulary (dropped; e.g. %s); "
                "%d of %d questions have an all-zero target",
                self.n_dropped_answers,
                self.n_human_answers,
                top,
                self.n_empty_targets,
                self.n_questions,
            )


def vqa_soft_target(
    answers: Sequence[str],
    vocab: AnswerVocab,
    stats: TargetStats | None = None,
    cache: dict[str, str] | None = None,
) -> SoftTarget:
    """The soft target of one question from its raw human answers (normalised here).

    stats: accumulates what was dropped (pass one TargetStats across calls, then call its log()).
    cache: raw -> normalised answers, shared across calls to skip re-normalising.
    """
    stats = stats if stats is not None else TargetStats()
    return _soft_target(answers, vocab, stats, cache if cache is not None else {})


def vqa_soft_targets(
    examples: Sequence[VqaExample], vocab: AnswerVocab
) -> tuple[list[SoftTarget], TargetStats]:
    """Soft targets of annotated examples (same order) and the counts of what was dropped (also logged)."""
    stats = TargetStats()
    cache: dict[str, str] = {}  # raw -> normalised: answers repeat a lot ("yes", "2"), normalising is slow
    targets = []
    for ex in examples:
        if ex.answers is None:
            raise ValueError(f"vqa_soft_targets: question {ex.question_id} has no answers (a test split?)")
        targets.append(_soft_target(ex.answers, vocab, stats, cache))
    stats.log()
    return targets, stats


def _soft_target(
    answers: Sequence[str], vocab: AnswerVocab, stats: TargetStats, cache: dict[str, str]
) -> SoftTarget:
    matches: dict[str, int] = {}
    for raw in answers:
        norm = cache.get(raw)
        if norm is None:
            norm = cache[raw] = normalize_answer(raw)
        matches[norm] = matches.get(norm, 0) + 1
    n_answers = len(answers)
    labeled = []
    for ans, n in matches.items():
        label = vocab.ans2label.get(ans)
        if label is None:
            stats.n_dropped_answers += n
            stats.dropped[ans] += n
        else:
            labeled.append((label, _score(n, n_answers)))
    labeled.sort()
    stats.n_questions += 1
    stats.n_human_answers += n_answers
    stats.n_empty_targets += not labeled
    return SoftTarget(tuple([lb for lb, _ in labeled]), tuple([s for _, s in labeled]))


@lru_cache(maxsize=256)
def _score(matches: int, n_answers: int) -> float:
    return vqa_soft_score(matches, n_answers)


def hard_target(answer: str, vocab: AnswerVocab) -> SoftTarget:
    """The target of a single-answer question (GQA): score 1 on its label, empty when out of vocabulary."""
    label = vocab.ans2label.get(answer)
    return SoftTarget((), ()) if label is None else SoftTarget((label,), (1.0,))


def dense_targets(targets: Sequence[SoftTarget], n_answers: int) -> torch.Tensor:
    """[B, n_answers] float32 tensor with each target's scores at its labels (zeros elsewhere)."""
    dense = torch.zeros(len(targets), n_answers)  # [B, A]
    rows = [i for i, t in enumerate(targets) for _ in t.labels]
    cols = [lb for t in targets for lb in t.labels]
    vals = [s for t in targets for s in t.scores]
    if cols and max(cols) >= n_answers:
        raise ValueError(f"dense_targets: label {max(cols)} >= n_answers {n_answers}")
    dense[rows, cols] = torch.tensor(vals, dtype=torch.float32)  # [B, A]
    return dense


__all__ = [
    "VQA_MIN_COUNT",
    "AnswerVocab",
    "SoftTarget",
    "TargetStats",
    "build_answer_vocab",
    "build_vqa_answer_vocab",
    "dense_targets",
    "hard_target",
    "load_answer_vocab",
    "vqa_soft_target",
    "vqa_soft_targets",
]
