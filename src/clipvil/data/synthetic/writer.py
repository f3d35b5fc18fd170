"""Writes the per-image records into the official files, streaming: images arrive in id order and the
splits are consecutive id ranges, so each split's files are open only while its images come in. The
parent keeps only the COCO caption lists of the current split (written at its end) in memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from clipvil.common.vqa_text import normalize_answer, vqa_soft_score
from clipvil.data.synthetic import layout
from clipvil.data.synthetic.spec import COCO_SPLIT, LXMERT_SPLIT

INFO = {
    "description": "clipvil synthetic shapes world, written in the official dataset formats",
    "version": "2.0",
    "year": 2024,
    "contributor": "clipvil",
    "date_created": "2024-01-01 00:00:00",  # fixed: the files must not depend on when they were made
}
LICENSE = {"url": "https://creativecommons.org/publicdomain/zero/1.0/", "name": "CC0 1.0 (generated data)"}


class JsonStream:
    """A JSON object `head + {key: [items...]}` (`{key: {name: item}}` when `mapping`), item by item."""

    def __init__(self, path: Path, head: dict[str, Any], key: str | None, mapping: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file: TextIO = path.open("w", encoding="utf-8")
        self.mapping, self.first = mapping, True
        opening = json.dumps(head)[:-1]
        if key is None:  # the whole file is the mapping / list itself
            self.file.write("{" if mapping else "[")
            self.closing = "}" if mapping else "]"
        else:
            self.file.write(
                opening + (", " if head else "") + json.dumps(key) + ": " + ("{" if mapping else "[")
            )
            self.closing = ("}" if mapping else "]") + "}"

    def add(self, item: Any, name: str | None = None) -> None:
        self.file.write("" if self.first else ", ")
        self.first = False
        self.file.write((json.dumps(name) + ": " if self.mapping else "") + json.dumps(item))

    def close(self) -> None:
        self.file.write(self.closing)
        self.file.close()


class SplitFiles:
    """The open files of one split."""

    def __init__(self, root: Path, split: str) -> None:
        coco = COCO_SPLIT[split]
        self.split = split
        self.scenes = JsonStream(root / layout.scenes_file(split), {"info": INFO, "split": coco}, "scenes")
        qhead = {
            "info": INFO,
            "task_type": "Open-Ended",
            "data_type": "mscoco",
            "license": LICENSE,
            "data_subtype": coco,
        }
        self.questions = JsonStream(root / layout.vqa_questions(split), qhead, "questions")
        self.annotations = (
            None
            if split == "test"
            else JsonStream(root / layout.vqa_annotations(split), qhead, "annotations")
        )
        self.gqa = JsonStream(root / layout.gqa_questions(split), {}, None, mapping=True)
        self.captions = root / layout.coco_captions(split)
        self.images: list[dict[str, Any]] = []
        self.caption_annotations: list[dict[str, Any]] = []
        (root / layout.snli_ve(split)).parent.mkdir(parents=True, exist_ok=True)
        self.snli = (root / layout.snli_ve(split)).open("w", encoding="utf-8")
        self.lxmert = JsonStream(root / layout.lxmert(split), {}, None) if split in LXMERT_SPLIT else None
        self.counts = {"images": 0, "vqa_questions": 0, "gqa_questions": 0, "captions": 0, "snli_ve_pairs": 0}

    def add(self, rec: dict[str, Any], answers: dict[str, set[str]]) -> None:
        self.scenes.add(rec["scene"])
        for q in rec["vqa_questions"]:
            self.questions.add(q)
        if self.annotations is not None:
            for a in rec["vqa_annotations"]:
                self.annotations.add(a)
        for qid, g in rec["gqa"].items():
            self.gqa.add(g, qid)
        self.images.append(
            {
                "license": 1,
                "file_name": rec["file_name"],
                "height": rec["height"],
                "width": rec["width"],
                "id": rec["image_id"],
            }
        )
        for k, cap in enumerate(rec["captions"]):
            self.caption_annotations.append(
                {"image_id": rec["image_id"], "id": rec["image_id"] * 10 + k, "caption": cap["raw"]}
            )
        for pair in rec["snli_ve"]:
            self.snli.write(json.dumps(pair) + "\n")
        if self.lxmert is not None:
            self.lxmert.add(lxmert_entry(rec, answers))
        c = self.counts
        c["images"] += 1
        c["vqa_questions"] += len(rec["vqa_questions"])
        c["gqa_questions"] += len(rec["gqa"])
        c["captions"] += len(rec["captions"])
        c["snli_ve_pairs"] += len(rec["snli_ve"])

    def close(self) -> None:
        for stream in (self.scenes, self.questions, self.annotations, self.gqa, self.lxmert):
            if stream is not None:
                stream.close()
        self.snli.close()
        coco = {
            "info": INFO,
            "images": self.images,
            "licenses": [dict(LICENSE, id=1)],
            "type": "captions",
            "annotations": self.caption_annotations,
        }
        self.captions.parent.mkdir(parents=True, exist_ok=True)
        self.captions.write_text(json.dumps(coco), encoding="utf-8")


def lxmert_entry(rec: dict[str, Any], answers: dict[str, set[str]]) -> dict[str, Any]:
    """{img_id, sentf: {source: [sentences]}, labelf: {source: [{answer: score}]}} as in LXMERT's
    data/lxmert/*.json; VQA labels are the official soft scores of the normalised human answers.
    Every labelled answer is noted in `answers` (answer -> sources) for the answer table."""
    vqa_labels = []
    for ann in rec["vqa_annotations"]:
        counts: dict[str, int] = {}
        for a in ann["answers"]:
            key = normalize_answer(a["answer"])
            counts[key] = counts.get(key, 0) + 1
        vqa_labels.append({a: round(vqa_soft_score(n), 4) for a, n in sorted(counts.items())})
    gqa_labels = [{g["answer"]: 1.0} for g in rec["gqa"].values()]
    for source, labels in (("vqa", vqa_labels), ("gqa", gqa_labels)):
        for label in labels:
            for a in label:
                answers.setdefault(a, set()).add(source)
    split = rec["split"]
    return {
        "img_id": layout.coco_name(split, rec["image_id"]),
        "sentf": {
            "mscoco": [c["raw"] for c in rec["captions"]],
            "vqa": [q["question"] for q in rec["vqa_questions"]],
            "gqa": [g["question"] for g in rec["gqa"].values()],
        },
        "labelf": {"vqa": vqa_labels, "gqa": gqa_labels},
    }


class WorldWriter:
    """Receives the image records in id order and writes every file; `finish` returns the counts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.current: SplitFiles | None = None
        self.counts: dict[str, dict[str, int]] = {}
        self.answers: dict[str, set[str]] = {}
        self.karpathy = JsonStream(root / layout.KARPATHY, {"dataset": "coco"}, "images")
        self.karpathy_index = 0

    def add(self, rec: dict[str, Any]) -> None:
        if self.current is None or self.current.split != rec["split"]:
            self._close_split()
            self.current = SplitFiles(self.root, rec["split"])
        self.current.add(rec, self.answers)
        self._add_karpathy(rec)

    def _add_karpathy(self, rec: dict[str, Any]) -> None:
        sentids = [rec["image_id"] * 10 + k for k in range(len(rec["captions"]))]
        sentences = [
            {"tokens": c["tokens"], "raw": c["raw"], "imgid": self.karpathy_index, "sentid": s}
            for c, s in zip(rec["captions"], sentids, strict=True)
        ]
        self.karpathy.add(
            {
                "filepath": COCO_SPLIT[rec["split"]],
                "sentids": sentids,
                "filename": rec["file_name"],
                "imgid": self.karpathy_index,
                "split": rec["split"],
                "sentences": sentences,
                "cocoid": rec["image_id"],
            }
        )
        self.karpathy_index += 1

    def _close_split(self) -> None:
        if self.current is not None:
            self.current.close()
            self.counts[self.current.split] = self.current.counts
            self.current = None

    def finish(self) -> dict[str, dict[str, int]]:
        """Close everything, write the LXMERT answer table; the per-split counts."""
        self._close_split()
        self.karpathy.close()
        table = [{"ans": a, "dsets": sorted(self.answers[a])} for a in sorted(self.answers)]
        path = self.root / layout.LXMERT_ANSWERS
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(table), encoding="utf-8")
        return self.counts
