"""Every metric of GQA's official eval.py (gqadataset.org, 2019 release), over plain dicts.

All scores are over the *balanced* questions (``isBalanced`` true) of the questions dict given (a balanced
file, or an all-questions file of which the balanced ones are scored), in percent unless said otherwise:

- accuracy, binary, open: exact string match with the gold answer (open: structural type "query");
- validity / plausibility: the prediction is in the question's ``valid`` / ``plausible`` list of the
  choices file (``{qid: {"valid": [...], "plausible": [...]}}``); for the "what do they have in common"
  questions (``types.detailed`` contains "Common") the list is ["color", "material", "shape"];
- consistency: for each balanced question answered right, the accuracy over its ``entailed`` questions
  (itself excluded), averaged over those questions. The entailed questions are mostly unbalanced ones, so
  this needs the all-questions file (their answers) and predictions for them;
- distribution: the chi-square statistic between the gold and the predicted answer histograms of each
  ``groups.global`` group, sum over a group's gold answers of (predicted - gold)^2 / gold, averaged over the
  groups weighted by their size, divided by 100 (a number, lower is better; predicted answers that are
  never gold do not count, as in eval.py);
- grounding: attention mass on the gold regions (`clipvil.metrics.gqa_grounding`), needs attentions and
  scene graphs;
- accuracy per structural type, per semantic type, per number of reasoning steps (program steps, not
  counting those whose "operation: argument" contains "exist", "query: name" or "choose name") and per
  question length in words, each as (accuracy, number of questions).

Where eval.py prints a 0 because an input is absent (no choices file, no attentions, no entailed
question answered), the metric here is *not computed* and its reason is reported instead.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from clipvil.metrics._checks import check_ids, check_text
from clipvil.metrics.gqa_grounding import grounding_score

_METRIC = "gqa_eval"
METRICS: tuple[str, ...] = (
    "binary", "open", "accuracy", "consistency", "validity", "plausibility", "grounding", "distribution",
)
_NOT_STEPS = ("exist", "query: name", "choose name")
_COMMON = ["color", "material", "shape"]
Question = Mapping[str, Any]


@dataclass(frozen=True)
class GqaEvalScores:
    """The computed metrics (a metric is in `metrics` or, with its reason, in `not_computed`) and the
    breakdowns, each {type: (accuracy in percent, number of questions)}."""

    metrics: dict[str, float]
    not_computed: dict[str, str]
    per_structural_type: dict[str, tuple[float, int]]
    per_semantic_type: dict[str, tuple[float, int]]
    per_steps: dict[int, tuple[float, int]]
    per_length: dict[int, tuple[float, int]]
    n_questions: int  # balanced questions scored

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with eval.py's names (breakdown keys as strings, values [accuracy, count])."""
        out: dict[str, Any] = {m: self.metrics[m] for m in METRICS if m in self.metrics}
        for name, table in (
            ("accuracyPerStructuralType", self.per_structural_type),
            ("accuracyPerSemanticType", self.per_semantic_type),
            ("accuracyPerSteps", self.per_steps),
            ("accuracyPerLength", self.per_length),
        ):
            out[name] = {str(k): list(table[k]) for k in sorted(table)}
        out["notComputed"] = dict(self.not_computed)
        out["n_questions"] = self.n_questions
        return out


def steps_number(question: Question) -> int:
    """Reasoning steps: program steps except the final querying kinds eval.py leaves out."""
    return sum(
        1
        for step in question["semantic"]
        if not any(o in f"{step['operation']}: {step['argument']}" for o in _NOT_STEPS)
    )


def words_number(question: Question) -> int:
    """Question length in whitespace-separated words."""
    return len(question["question"].split())


def _need(cond: bool, qid: Hashable, what: str) -> None:
    if not cond:
        raise ValueError(f"{_METRIC}: question {qid}: {what}")


def _check_question(qid: Hashable, q: object) -> Question:
    """The entry, with every field the scores read checked (errors name the question and the field)."""
    _need(isinstance(q, Mapping), qid, "expected a JSON object")
    assert isinstance(q, Mapping)
    for key in ("question", "answer"):
        _need(isinstance(q.get(key), str), qid, f"needs a string '{key}' (test questions have no answer)")
    types = q.get("types")
    _need(isinstance(types, Mapping) and all(isinstance(types.get(k), str) for k in
                                             ("structural", "semantic", "detailed")),
          qid, "needs types.structural, types.semantic and types.detailed")
    _need(isinstance(q.get("groups"), Mapping) and "global" in q["groups"], qid, "needs groups.global")
    steps = q.get("semantic")
    _need(isinstance(steps, list) and all(isinstance(s, Mapping) and "operation" in s and "argument" in s
                                          for s in steps), qid, "needs 'semantic': [{operation, argument}]")
    return q


def balanced_questions(questions: Mapping[Hashable, Any]) -> dict[Hashable, Question]:
    """The entries with isBalanced true, checked; a ValueError when there are none or one lacks isBalanced."""
    out: dict[Hashable, Question] = {}
    for qid, q in questions.items():
        _need(isinstance(q, Mapping) and isinstance(q.get("isBalanced"), bool), qid, "needs a boolean isBalanced")
        if q["isBalanced"]:
            out[qid] = _check_question(qid, q)
    if not out:
        raise ValueError(f"{_METRIC}: no balanced question to score")
    return out


def _percent(scores: list[float]) -> float:
    return 100.0 * sum(scores) / len(scores)


def _breakdown(values: dict[Hashable, bool], key: dict[Hashable, Any]) -> dict[Any, tuple[float, int]]:
    groups: dict[Any, list[float]] = defaultdict(list)
    for qid, ok in values.items():
        groups[key[qid]].append(float(ok))
    return {k: (_percent(v), len(v)) for k, v in groups.items()}


def chi_square(gold: Mapping[Any, Mapping[str, int]], predicted: Mapping[Any, Mapping[str, int]]) -> float:
    """eval.py's distribution statistic (before its division by 100): per group, the sum over the gold
    answers of (predicted - gold)^2 / gold, averaged over the groups weighted by their gold size."""
    total_score, total = 0.0, 0
    for group, histogram in gold.items():
        score = sum((predicted.get(group, {}).get(a, 0) - e) ** 2 / e for a, e in histogram.items())
        size = sum(histogram.values())
        total_score += score * size
        total += size
    if total == 0:
        raise ValueError(f"{_METRIC}: chi_square of empty histograms")
    return total_score / total


def _distribution(scored: dict[Hashable, Question], predictions: Mapping[Hashable, str]) -> float | None:
    gold: dict[Any, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    predicted: dict[Any, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for qid, q in scored.items():
        group = q["groups"]["global"]
        if group is not None:
            gold[group][q["answer"]] += 1
            predicted[group][predictions[qid]] += 1
    return chi_square(gold, predicted) / 100 if gold else None


def _choices_scores(
    scored: dict[Hashable, Question], predictions: Mapping[Hashable, str], choices: Mapping[Hashable, Any]
) -> dict[str, float]:
    """validity and plausibility in percent."""
    out = {}
    for metric, field in (("validity", "valid"), ("plausibility", "plausible")):
        hits = []
        for qid, q in scored.items():
            entry = choices.get(qid)
            _need(isinstance(entry, Mapping) and isinstance(entry.get(field), list), qid,
                  f"the choices have no '{field}' list for it")
            group = _COMMON if "Common" in q["types"]["detailed"] else entry[field]
            hits.append(float(predictions[qid] in group))
        out[metric] = _percent(hits)
    return out


def _consistency(
    scored: dict[Hashable, Question],
    predictions: Mapping[Hashable, str],
    all_questions: Mapping[Hashable, Any],
) -> float | None:
    """Mean, over the balanced questions answered right, of the accuracy on their entailed questions."""
    per_question = []
    for qid, q in scored.items():
        entailed = q.get("entailed")
        _need(isinstance(entailed, list), qid, "needs an 'entailed' list for consistency")
        inferred = [e for e in entailed if e != qid]
        for eid in inferred:
            _need(isinstance(all_questions.get(eid), Mapping) and isinstance(all_questions[eid].get("answer"), str),
                  qid, f"entailed question {eid} is not in the all-questions file (or has no answer)")
            _need(eid in predictions, qid, f"no prediction for its entailed question {eid} (consistency needs "
                                           "predictions for the all-questions file)")
        if predictions[qid] == q["answer"] and inferred:
            per_question.append(
                sum(float(predictions[e] == all_questions[e]["answer"]) for e in inferred) / len(inferred)
            )
    return _percent(per_question) if per_question else None


def _grounding(
    scored: dict[Hashable, Question],
    attentions: Mapping[Hashable, Any],
    scene_graphs: Mapping[str, Any],
    map_size: int,
    object_features: bool,
) -> float:
    values = []
    for qid, q in scored.items():
        _need(qid in attentions, qid, "no attention map for it")
        graph = scene_graphs.get(q.get("imageId"))
        _need(isinstance(graph, Mapping), qid, f"image {q.get('imageId')!r} is not in the scene graphs")
        values.append(grounding_score(q, graph, attentions[qid], map_size=map_size,
                                      object_features=object_features, where=f"{_METRIC}: question {qid}"))
    return _percent(values)


def gqa_eval(
    predictions: Mapping[Hashable, str],
    questions: Mapping[Hashable, Any],
    *,
    choices: Mapping[Hashable, Any] | None = None,
    all_questions: Mapping[Hashable, Any] | None = None,
    attentions: Mapping[Hashable, Any] | None = None,
    scene_graphs: Mapping[str, Any] | None = None,
    map_size: int = 7,
    object_features: bool = False,
) -> GqaEvalScores:
    """All of eval.py's metrics for {question_id: answer} over the balanced questions of `questions`.

    choices: the official choices dict (validity, plausibility). all_questions: the all-questions dict
    (consistency; pass `questions` again when it is the all-questions file). attentions: {question_id:
    attention map} with scene_graphs ({imageId: scene graph}) for grounding; map_size and object_features
    as eval.py's --mapSize / --objectFeatures. A missing input leaves its metrics in `not_computed`.
    """
    scored = balanced_questions(questions)
    check_ids(_METRIC, predictions, scored, allow_extra=True)
    for qid in scored:
        check_text(_METRIC, "prediction for question", qid, predictions[qid])
    correct = {qid: predictions[qid] == q["answer"] for qid, q in scored.items()}
    metrics: dict[str, float] = {"accuracy": _percent([float(v) for v in correct.values()])}
    not_computed: dict[str, str] = {}
    for kind in ("binary", "open"):
        subset = [float(ok) for qid, ok in correct.items()
                  if (scored[qid]["types"]["structural"] == "query") == (kind == "open")]
        if subset:
            metrics[kind] = _percent(subset)
        else:
            not_computed[kind] = f"no {kind} question among the balanced questions"
    if choices is None:
        not_computed["validity"] = not_computed["plausibility"] = "no choices file given (<split>_choices.json)"
    else:
        metrics.update(_choices_scores(scored, predictions, choices))
    consistency = None if all_questions is None else _consistency(scored, predictions, all_questions)
    if consistency is not None:
        metrics["consistency"] = consistency
    else:
        not_computed["consistency"] = (
            "no all-questions file given (<split>_all_questions.json: the entailed questions and their answers)"
            if all_questions is None else "no balanced question answered right has entailed questions"
        )
    if attentions is None or scene_graphs is None:
        not_computed["grounding"] = (
            "skipped: no attention maps given (attention models only)" if attentions is None
            else "skipped: attention maps given but no scene graphs (<split>_sceneGraphs.json)"
        )
    else:
        metrics["grounding"] = _grounding(scored, attentions, scene_graphs, map_size, object_features)
    distribution = _distribution(scored, predictions)
    if distribution is None:
        not_computed["distribution"] = "no balanced question has a global group"
    else:
        metrics["distribution"] = distribution
    return GqaEvalScores(
        metrics=metrics,
        not_computed=not_computed,
        per_structural_type=_breakdown(correct, {k: q["types"]["structural"] for k, q in scored.items()}),
        per_semantic_type=_breakdown(correct, {k: q["types"]["semantic"] for k, q in scored.items()}),
        per_steps=_breakdown(correct, {k: steps_number(q) for k, q in scored.items()}),
        per_length=_breakdown(correct, {k: words_number(q) for k, q in scored.items()}),
        n_questions=len(scored),
    )


__all__ = ["METRICS", "GqaEvalScores", "balanced_questions", "chi_square", "gqa_eval", "steps_number",
           "words_number"]
