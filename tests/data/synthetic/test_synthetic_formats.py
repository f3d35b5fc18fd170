"""Format compliance: every file of the synthetic world has the fields and conventions of the official
files (checked against the real samples in shared/data where one exists)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from PIL import Image

from clipvil.common.vqa_text import normalize_answer
from clipvil.data.synthetic import Manifest
from clipvil.data.synthetic.annotators import QUESTION_TYPES
from clipvil.data.synthetic.grammar import binary, clause, copula, leaf, node, noun_phrase, ptb


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def test_question_types_are_the_official_list(shared_data: Path) -> None:
    official = (shared_data / "vqa-official" / "mscoco_question_types.txt").read_text().splitlines()
    assert list(QUESTION_TYPES) == [t for t in official if t.strip()]


def test_manifest_lists_existing_files(world: Manifest) -> None:
    assert world.missing() == []
    assert world.splits == ["train", "val", "test"]
    assert {s: c["images"] for s, c in world.counts.items()} == {"train": 240, "val": 30, "test": 30}
    assert Manifest.load(world.root).to_json() == world.to_json()


def test_vqa_files(world: Manifest, shared_data: Path) -> None:
    real_q = load(shared_data / "allennlp-models" / "vqav2" / "questions.json")
    qids: set[int] = set()
    for split, subtype in (("train", "train2014"), ("val", "val2014"), ("test", "test2015")):
        qfile = load(world.path("vqa_questions", split))
        assert set(real_q) <= set(qfile)
        assert (qfile["task_type"], qfile["data_type"], qfile["data_subtype"]) == (
            "Open-Ended",
            "mscoco",
            subtype,
        )
        assert world.path("vqa_questions", split).name == f"v2_OpenEnded_mscoco_{subtype}_questions.json"
        for q in qfile["questions"]:
            assert set(q) == {"image_id", "question", "question_id"}
            assert q["question_id"] not in qids
            qids.add(q["question_id"])
            image = world.path("coco_images", split) / f"COCO_{subtype}_{q['image_id']:012d}.jpg"
            assert image.is_file()
        assert (
            len(qfile["questions"])
            == world.counts[split]["vqa_questions"]
            == world.counts[split]["images"] * 5
        )
    assert "vqa_annotations/test" not in world.files  # test2015 has questions only


def test_vqa_annotations(world: Manifest) -> None:
    for split in ("train", "val"):
        questions = {q["question_id"]: q for q in load(world.path("vqa_questions", split))["questions"]}
        afile = load(world.path("vqa_annotations", split))
        assert afile["data_subtype"] == world.path("vqa_annotations", split).name.split("_")[2]
        assert len(afile["annotations"]) == len(questions)
        for ann in afile["annotations"]:
            q = questions[ann["question_id"]]
            assert ann["image_id"] == q["image_id"]
            assert ann["question_type"] in QUESTION_TYPES
            assert (q["question"].lower() + " ").startswith(ann["question_type"] + " ")
            assert ann["answer_type"] in ("yes/no", "number", "other")
            assert [a["answer_id"] for a in ann["answers"]] == list(range(1, 11))
            assert all(a["answer_confidence"] in ("yes", "maybe", "no") for a in ann["answers"])
            counts = Counter(a["answer"] for a in ann["answers"])
            assert ann["multiple_choice_answer"] == counts.most_common(1)[0][0]
            assert normalize_answer(ann["multiple_choice_answer"]) == ann["multiple_choice_answer"]
            if ann["answer_type"] == "yes/no":
                assert ann["multiple_choice_answer"] in ("yes", "no")
            if ann["answer_type"] == "number":
                assert ann["multiple_choice_answer"].isdigit()


def test_gqa_files(world: Manifest, shared_data: Path) -> None:
    real = next(iter(load(shared_data / "allennlp-models" / "gqa" / "questions.json").values()))
    names = {"train": "train", "val": "val", "test": "testdev"}
    for split in world.splits:
        path = world.path("gqa_questions", split)
        assert path.name == f"{names[split]}_balanced_questions.json"
        questions = load(path)
        assert len(questions) == world.counts[split]["gqa_questions"]
        for qid, q in questions.items():
            assert list(q) == list(real)  # same fields, same order
            assert set(q["types"]) == set(real["types"]) and set(q["annotations"]) == set(real["annotations"])
            assert qid in q["equivalent"] and qid.isdigit()
            assert (world.path("gqa_images") / f"{q['imageId']}.jpg").is_file()
            steps = q["semanticStr"].split("->")
            assert len(steps) == len(q["semantic"])
            for step, op in zip(steps, q["semantic"], strict=True):
                assert step.startswith(f"{op['operation']}: {op['argument']}")
                assert all(d < len(q["semantic"]) for d in op["dependencies"])
            for text, ann in (
                (q["question"], q["annotations"]["question"]),
                (q["fullAnswer"], q["annotations"]["fullAnswer"]),
            ):
                assert all(int(i) < len(text.split()) for i in ann)


def test_snli_ve_files(world: Manifest, shared_data: Path) -> None:
    sample = (shared_data / "allennlp-models" / "visual_entailment" / "sample_pairs.jsonl").read_text()
    real_keys = list(json.loads(sample.splitlines()[0]))
    pair_ids: set[str] = set()
    for split, name in (("train", "train"), ("val", "dev"), ("test", "test")):
        path = world.path("snli_ve", split)
        assert path.name == f"snli_ve_{name}.jsonl"
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert len(lines) == world.counts[split]["snli_ve_pairs"] == world.counts[split]["images"] * 6
        labels = Counter(p["gold_label"] for p in lines)
        assert labels["entailment"] == labels["neutral"] == labels["contradiction"]
        for p in lines:
            assert list(p) == real_keys
            assert (world.path("flickr30k_images") / f"{p['Flickr30K_ID']}.jpg").is_file()
            assert re.fullmatch(rf"{p['Flickr30K_ID']}\.jpg#\d", p["captionID"])
            assert p["pairID"] == f"{p['captionID']}r1{p['gold_label'][0]}"
            assert Counter(p["annotator_labels"]).most_common(1)[0][0] == p["gold_label"]
            assert len(p["annotator_labels"]) in (1, 5)
            for s in ("sentence1", "sentence2"):
                leaves = re.findall(r"\(\S+ ([^()\s]+)\)", p[f"{s}_parse"])
                assert " ".join(leaves).replace(" ,", ",").replace(" .", ".") == p[s]
                assert p[f"{s}_binary_parse"].replace("( ", "").replace(" )", "").split() == leaves
            assert p["pairID"] not in pair_ids
            pair_ids.add(p["pairID"])


def test_binary_parse_matches_snli_convention(shared_data: Path) -> None:
    """Our tree for 'A toddler sleeps outside.' gives the same parses as the real SNLI-VE line."""
    real = json.loads(
        (shared_data / "allennlp-models" / "visual_entailment" / "sample_pairs.jsonl")
        .read_text()
        .splitlines()[0]
    )
    vp = node("VP", leaf("VBZ", "sleeps"), node("ADVP", leaf("RB", "outside")))
    tree = node("ROOT", node("S", noun_phrase("a", [], "toddler"), vp, leaf(".", ".")))
    assert binary(tree) == real["sentence2_binary_parse"]
    assert ptb(tree) == real["sentence2_parse"]
    assert ptb(clause(noun_phrase("the", [], "circle"), copula(leaf("JJ", "red")))).startswith(
        "(ROOT (S (NP (DT The)"
    )


def test_caption_files(world: Manifest) -> None:
    ann_ids: set[int] = set()
    for split in world.splits:
        coco = load(world.path("captions", split))
        assert {"info", "images", "licenses", "annotations"} <= set(coco)
        per_image = Counter(a["image_id"] for a in coco["annotations"])
        assert len(coco["images"]) == world.counts[split]["images"]
        for img in coco["images"]:
            assert per_image[img["id"]] == 5
            with Image.open(world.path("coco_images", split) / img["file_name"]) as im:
                assert im.size == (img["width"], img["height"])
        for a in coco["annotations"]:
            assert a["id"] not in ann_ids and a["caption"].endswith(".")
            ann_ids.add(a["id"])
        for img_id, n in per_image.items():
            texts = [a["caption"] for a in coco["annotations"] if a["image_id"] == img_id]
            assert len(set(texts)) == n  # five different captions


def test_karpathy_file(world: Manifest) -> None:
    data = load(world.path("karpathy"))
    assert data["dataset"] == "coco" and len(data["images"]) == 300
    sentids = set()
    for k, img in enumerate(data["images"]):
        assert img["imgid"] == k and img["split"] in ("train", "val", "test")
        assert (world.root / "coco" / img["filepath"] / img["filename"]).is_file()
        assert img["sentids"] == [s["sentid"] for s in img["sentences"]] and len(img["sentids"]) == 5
        for s in img["sentences"]:
            assert s["imgid"] == k and s["tokens"] == re.sub(r"[,.]", "", s["raw"]).lower().split()
            sentids.add(s["sentid"])
    assert len(sentids) == 1500


def test_lxmert_files(world: Manifest) -> None:
    """The layout LXMERT's LXMERTDataset / LXMERTTorchDataset read: labelf lists align with sentf lists."""
    table = {a["ans"] for a in load(world.path("lxmert_answers"))}
    for split, stem in (("train", "COCO_train2014_"), ("val", "COCO_val2014_")):
        data = load(world.path("lxmert", split))
        assert len(data) == world.counts[split]["images"]
        for datum in data:
            assert datum["img_id"].startswith(stem)
            assert (world.path("coco_images", split) / f"{datum['img_id']}.jpg").is_file()
            assert set(datum["sentf"]) == {"mscoco", "vqa", "gqa"} and set(datum["labelf"]) == {"vqa", "gqa"}
            for source, labels in datum["labelf"].items():
                assert len(labels) == len(datum["sentf"][source])
                for label in labels:
                    assert set(label) <= table and max(label.values()) == 1.0
    assert "lxmert/test" not in world.files
