"""GQA's full official metrics: golden values on the real AllenNLP sample (hand-made predictions, choices and
an entailed question), hand-computed consistency / distribution / grounding cases, and a port of eval.py's
main loop inside this file compared on random data."""

from __future__ import annotations

import copy
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from clipvil.metrics.gqa_eval import chi_square, gqa_eval, steps_number, words_number
from clipvil.metrics.gqa_grounding import grounding_score

# ---------------------------------------------------------------- the real sample (2 questions)


def _sample(shared_data: Path) -> tuple[dict, dict]:
    """(balanced questions file, all questions from the two shards plus a hand-made entailed question)."""
    root = shared_data / "allennlp-models" / "gqa"
    balanced = json.loads((root / "questions.json").read_text())
    all_questions: dict[str, Any] = {}
    for shard in ("questions0.json", "questions1.json"):
        all_questions.update(json.loads((root / "question_dir" / shard).read_text()))
    # 202218649 ("What is hanging above the chalkboard?" -> picture) entails 202218648, not in the sample
    all_questions["202218648"] = {
        "question": "Is there a picture above the chalkboard?", "answer": "yes", "imageId": "n578564",
        "isBalanced": False, "entailed": [], "equivalent": ["202218648"],
        "types": {"structural": "verify", "semantic": "rel", "detailed": "existRelS"},
        "groups": {"global": None, "local": "13-chalkboard_picture"},
        "semantic": [{"operation": "select", "dependencies": [], "argument": "chalkboard (0)"},
                     {"operation": "relate", "dependencies": [0], "argument": "picture,above,s (12)"},
                     {"operation": "exist", "dependencies": [1], "argument": "?"}],
    }
    return balanced, all_questions


CHOICES = {"202218649": {"valid": ["picture", "clock", "shelf"], "plausible": ["picture", "shelf"]},
           "20240871": {"valid": ["yes", "no"], "plausible": ["yes", "no"]}}


def test_real_sample_right_answer_inconsistent_entailed(shared_data: Path) -> None:
    balanced, all_questions = _sample(shared_data)
    predictions = {"202218649": "picture", "202218648": "no", "20240871": "no"}
    scores = gqa_eval(predictions, balanced, choices=CHOICES, all_questions=all_questions)
    # one balanced question, right; its one entailed question (itself excluded) wrong -> consistency 0
    assert scores.metrics == {"accuracy": 100.0, "open": 100.0, "validity": 100.0, "plausibility": 100.0,
                              "consistency": 0.0, "distribution": 0.0}
    assert set(scores.not_computed) == {"binary", "grounding"}
    assert "skipped" in scores.not_computed["grounding"]
    assert scores.n_questions == 1
    assert scores.per_structural_type == {"query": (100.0, 1)} and scores.per_semantic_type == {"rel": (100.0, 1)}
    # select, relate, query: name -> 2 steps; "What is hanging above the chalkboard?" -> 6 words
    assert scores.per_steps == {2: (100.0, 1)} and scores.per_length == {6: (100.0, 1)}
    predictions["202218648"] = "yes"
    assert gqa_eval(predictions, balanced, all_questions=all_questions).metrics["consistency"] == 100.0


def test_real_sample_wrong_but_valid_answer(shared_data: Path) -> None:
    balanced, all_questions = _sample(shared_data)
    predictions = {"202218649": "clock", "202218648": "yes"}
    scores = gqa_eval(predictions, balanced, choices=CHOICES, all_questions=all_questions)
    # gold histogram of group "thing": picture 1; predicted: clock 1 -> (0 - 1)^2 / 1 = 1, / 100
    assert scores.metrics == {"accuracy": 0.0, "open": 0.0, "validity": 100.0, "plausibility": 0.0,
                              "distribution": 0.01}
    assert scores.not_computed["consistency"] == "no balanced question answered right has entailed questions"
    out = scores.to_dict()
    assert out["accuracyPerSteps"] == {"2": [0.0, 1]} and out["notComputed"]["binary"].startswith("no binary")


def test_real_sample_all_questions_as_questions(shared_data: Path) -> None:
    _, all_questions = _sample(shared_data)
    predictions = {"202218649": "picture", "202218648": "yes", "20240871": "no"}
    # only 202218649 is balanced: the unbalanced ones are not scored
    scores = gqa_eval(predictions, all_questions, all_questions=all_questions)
    assert scores.n_questions == 1 and scores.metrics["accuracy"] == 100.0
    assert "no choices file" in scores.not_computed["validity"]
    # mark 20240871 balanced by hand: a logical (binary) question, 10 words, 5 steps, no global group
    edited = copy.deepcopy(all_questions)
    edited["20240871"]["isBalanced"] = True
    scores = gqa_eval(predictions, edited, choices=CHOICES)
    assert scores.metrics["accuracy"] == 50.0 and scores.metrics["binary"] == 0.0
    assert scores.metrics["open"] == 100.0 and scores.metrics["validity"] == 100.0
    assert scores.per_steps == {2: (100.0, 1), 5: (0.0, 1)} and scores.per_length == {6: (100.0, 1), 10: (0.0, 1)}
    assert scores.per_semantic_type == {"rel": (100.0, 1), "attr": (0.0, 1)}
    assert scores.metrics["distribution"] == 0.0  # the logical question has no global group


def test_real_sample_errors(shared_data: Path) -> None:
    balanced, all_questions = _sample(shared_data)
    with pytest.raises(ValueError, match=r"no prediction for 1 question\(s\) \(e.g. '202218649'\)"):
        gqa_eval({"20240871": "yes"}, balanced)
    with pytest.raises(ValueError, match="question 202218649: no prediction for its entailed question 202218648"):
        gqa_eval({"202218649": "picture"}, balanced, all_questions=all_questions)
    del all_questions["202218648"]
    with pytest.raises(ValueError, match="entailed question 202218648 is not in the all-questions file"):
        gqa_eval({"202218649": "picture", "202218648": "yes"}, balanced, all_questions=all_questions)
    with pytest.raises(ValueError, match="question 202218649: the choices have no 'valid' list"):
        gqa_eval({"202218649": "picture"}, balanced, choices={})
    with pytest.raises(ValueError, match="prediction for question '202218649': expected a string"):
        gqa_eval({"202218649": 3}, balanced)  # type: ignore[dict-item]


# ---------------------------------------------------------------- hand-made questions


def _q(answer: str, *, structural: str = "query", semantic: str = "attr", detailed: str = "chooseAttr",
       group: str | None = "color", entailed: tuple[str, ...] = (), balanced: bool = True,
       question: str = "What color is it?", steps: tuple[str, ...] = ("select: ball", "query: color")) -> dict:
    program = [{"operation": s.split(": ")[0], "dependencies": [], "argument": s.split(": ")[1]} for s in steps]
    return {"question": question, "answer": answer, "imageId": "1", "isBalanced": balanced,
            "entailed": list(entailed), "types": {"structural": structural, "semantic": semantic, "detailed": detailed},
            "groups": {"global": group, "local": "x"}, "semantic": program}


def test_consistency_by_hand() -> None:
    questions = {
        "q1": _q("red", entailed=("q1", "e1", "e2")),  # right; e1 right, e2 wrong -> 0.5
        "q2": _q("blue", entailed=("e3",)),  # right; e3 right -> 1.0
        "q3": _q("red", entailed=("e1",)),  # wrong: not counted
        "q4": _q("green"),  # right, nothing entailed: not counted
    }
    entailed = {"e1": _q("yes", balanced=False), "e2": _q("no", balanced=False), "e3": _q("no", balanced=False)}
    predictions = {"q1": "red", "q2": "blue", "q3": "blue", "q4": "green", "e1": "yes", "e2": "yes", "e3": "no"}
    scores = gqa_eval(predictions, questions, all_questions={**questions, **entailed})
    assert scores.metrics["consistency"] == pytest.approx(75.0)
    assert scores.metrics["accuracy"] == 75.0


def test_distribution_by_hand() -> None:
    questions = {
        "a": _q("red"), "b": _q("red"), "c": _q("blue"),  # color: gold red 2, blue 1
        "d": _q("circle", group="shape"), "e": _q("circle", group="shape"),  # shape: gold circle 2
        "f": _q("yes", group=None, structural="verify"),  # no global group: not in the distribution
    }
    predictions = {"a": "red", "b": "green", "c": "blue", "d": "square", "e": "square", "f": "no"}
    # color: (1-2)^2/2 + (1-1)^2/1 = 0.5, weight 3; shape: (0-2)^2/2 = 2, weight 2 -> (1.5 + 4) / 5 = 1.1
    assert gqa_eval(predictions, questions).metrics["distribution"] == pytest.approx(0.011)
    assert chi_square({"g": {"x": 4}}, {"g": {"x": 2, "y": 2}}) == pytest.approx(1.0)  # (2-4)^2/4; y ignored


def test_validity_common_questions_and_steps() -> None:
    questions = {
        "c": _q("color", detailed="twoCommon", structural="compare"),
        "v": _q("red", structural="verify", steps=("select: ball", "verify color: red")),
        "s": _q("tree", steps=("select: scene", "exist: tree", "choose name: tree|bush", "query: name")),
    }
    choices = {k: {"valid": ["red"], "plausible": []} for k in questions}
    scores = gqa_eval({"c": "shape", "v": "red", "s": "tree"}, questions, choices=choices)
    # "Common" questions: valid and plausible when the answer is color / material / shape
    assert scores.metrics["validity"] == pytest.approx(100 * 2 / 3)
    assert scores.metrics["plausibility"] == pytest.approx(100 / 3)
    assert [steps_number(questions[k]) for k in "cvs"] == [2, 2, 1]
    assert words_number({"question": "Is  the ball\tred?"}) == 4


def test_question_errors() -> None:
    with pytest.raises(ValueError, match="question q: needs a boolean isBalanced"):
        gqa_eval({"q": "red"}, {"q": {"answer": "red"}})
    with pytest.raises(ValueError, match="question q: needs a string 'answer'"):
        gqa_eval({"q": "red"}, {"q": {**_q("red"), "answer": None}})
    with pytest.raises(ValueError, match="question q: needs types.structural"):
        gqa_eval({"q": "red"}, {"q": {**_q("red"), "types": {"structural": "query"}}})
    with pytest.raises(ValueError, match="no balanced question"):
        gqa_eval({"q": "red"}, {"q": _q("red", balanced=False)})


# ---------------------------------------------------------------- grounding


def test_grounding_by_hand() -> None:
    graph = {"width": 100, "height": 100, "objects": {"o1": {"x": 0, "y": 0, "w": 50, "h": 50},
                                                      "o2": {"x": 50, "y": 0, "w": 50, "h": 25}}}
    question = {**_q("red"), "annotations": {"question": {"2": "o1"}, "fullAnswer": {"5": "o2"}, "answer": {}}}
    # 2x2 map, first index along x: [0][0] is x<.5,y<.5 (o1, all of it); [1][0] is x>.5,y<.5 (o2 covers half)
    attention = [[0.4, 0.1], [0.3, 0.2]]
    assert grounding_score(question, graph, attention, map_size=2) == pytest.approx(0.4 + 0.3 * 0.5)
    boxes = [[0, 0, 0.5, 0.5, 0.6], [0.5, 0.5, 1, 1, 0.4]]
    assert grounding_score(question, graph, boxes, object_features=True) == pytest.approx(0.6)
    scene_question = {**question, "semantic": [{"operation": "select", "argument": "scene"}]}
    assert grounding_score(scene_question, graph, attention, map_size=2) == pytest.approx(0.55 + 1.0)
    scores = gqa_eval({"q": "red"}, {"q": question}, attentions={"q": attention}, scene_graphs={"1": graph},
                      map_size=2)
    assert scores.metrics["grounding"] == pytest.approx(55.0)
    no_graphs = gqa_eval({"q": "red"}, {"q": question}, attentions={"q": attention})
    assert "no scene graphs" in no_graphs.not_computed["grounding"]
    with pytest.raises(ValueError, match="spatial attention must be 7x7"):
        gqa_eval({"q": "red"}, {"q": question}, attentions={"q": attention}, scene_graphs={"1": graph})
    with pytest.raises(ValueError, match="question q: no attention map"):
        gqa_eval({"q": "red"}, {"q": question}, attentions={}, scene_graphs={"1": graph})


# ---------------------------------------------------------------- a port of eval.py's main loop


def _official(questions: dict, choices: dict, predictions: dict) -> dict:
    """eval.py (gqadataset.org) main loop, --consistency on, over one all-questions dict; averages x100."""
    scores: dict[str, Any] = {k: [] for k in ("accuracy", "binary", "open", "validity", "plausibility",
                                              "consistency")}
    for k in ("accuracyPerStructuralType", "accuracyPerSemanticType", "accuracyPerLength", "accuracyPerSteps"):
        scores[k] = defaultdict(list)
    dist = {"gold": defaultdict(lambda: defaultdict(int)), "predicted": defaultdict(lambda: defaultdict(int))}

    def avg(values: list) -> float:
        return float(sum(values)) / len(values) if values else 0

    for qid, question in questions.items():
        if not question["isBalanced"]:
            continue
        gold, predicted = question["answer"], predictions[qid]
        correct = predicted == gold
        score = float(correct)
        steps = len([c for c in question["semantic"] if not any(
            o in "{}: {}".format(c["operation"], c["argument"]) for o in ["exist", "query: name", "choose name"])])
        scores["accuracy"].append(score)
        scores["accuracyPerLength"][len(question["question"].split())].append(score)
        scores["accuracyPerSteps"][steps].append(score)
        scores["accuracyPerStructuralType"][question["types"]["structural"]].append(score)
        scores["accuracyPerSemanticType"][question["types"]["semantic"]].append(score)
        scores["open" if question["types"]["structural"] == "query" else "binary"].append(score)
        for name, field in (("validity", "valid"), ("plausibility", "plausible")):
            group = ["color", "material", "shape"] if "Common" in question["types"]["detailed"] else choices[qid][field]
            scores[name].append(float(predicted in group))
        if question["groups"]["global"] is not None:
            dist["gold"][question["groups"]["global"]][gold] += 1
            dist["predicted"][question["groups"]["global"]][predicted] += 1
        inferred = [e for e in question["entailed"] if e != qid]
        if correct and inferred:
            scores["consistency"].append(avg([float(predictions[e] == questions[e]["answer"]) for e in inferred]))
    sum_score, sum_overall = 0.0, 0
    for group in dist["gold"]:
        score, overall = 0.0, 0
        for ans in dist["gold"][group]:
            e = dist["gold"][group][ans]
            score += (float(dist["predicted"][group].get(ans, 0) - e) ** 2) / e
            overall += e
        sum_score += score * overall
        sum_overall += overall
    out: dict[str, Any] = {k: avg(scores[k]) * 100 for k in ("accuracy", "binary", "open", "validity",
                                                              "plausibility", "consistency")}
    out["distribution"] = sum_score / sum_overall / 100
    for k in ("accuracyPerStructuralType", "accuracyPerSemanticType", "accuracyPerLength", "accuracyPerSteps"):
        out[k] = {t: (avg(v) * 100, len(v)) for t, v in scores[k].items()}
    return out


def test_matches_a_port_of_eval_py_on_random_data() -> None:
    rng = random.Random(1)
    answers = ["red", "blue", "yes", "no", "circle", "color", "shape"]
    ops = ["select: ball", "relate: left", "filter color: red", "exist: ?", "query: name", "choose name: a|b",
           "verify color: red", "query: color"]
    ids = [str(i) for i in range(300)]
    questions = {}
    for qid in ids:
        questions[qid] = _q(
            rng.choice(answers), structural=rng.choice(["query", "verify", "logical", "choose", "compare"]),
            semantic=rng.choice(["attr", "rel", "obj", "cat", "global"]),
            detailed=rng.choice(["chooseAttr", "twoCommon", "relS"]), group=rng.choice(["color", "shape", None]),
            entailed=tuple(rng.sample(ids, rng.randint(0, 4))), balanced=rng.random() < 0.6,
            question=" ".join(["w"] * rng.randint(3, 9)), steps=tuple(rng.sample(ops, rng.randint(1, 5))))
    choices = {qid: {"valid": rng.sample(answers, 3), "plausible": rng.sample(answers, 2)} for qid in ids}
    predictions = {qid: q["answer"] if rng.random() < 0.5 else rng.choice(answers) for qid, q in questions.items()}
    expected = _official(questions, choices, predictions)
    scores = gqa_eval(predictions, questions, choices=choices, all_questions=questions)
    assert scores.not_computed == {"grounding": "skipped: no attention maps given (attention models only)"}
    for name in ("accuracy", "binary", "open", "validity", "plausibility", "consistency", "distribution"):
        assert scores.metrics[name] == pytest.approx(expected[name]), name
    for ours, theirs in ((scores.per_structural_type, "accuracyPerStructuralType"),
                         (scores.per_semantic_type, "accuracyPerSemanticType"),
                         (scores.per_steps, "accuracyPerSteps"), (scores.per_length, "accuracyPerLength")):
        assert ours.keys() == expected[theirs].keys(), theirs
        for key, (accuracy, n) in expected[theirs].items():
            assert ours[key][0] == pytest.approx(accuracy) and ours[key][1] == n, (theirs, key)
