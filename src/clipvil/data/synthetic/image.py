"""Everything about one image, made in a worker: the JPEG (plus its GQA / Flickr30k-named links) and the
records every dataset file needs, already in their official field layout. The parent only concatenates,
so the output does not depend on how images are spread over processes."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from clipvil.data.synthetic import layout
from clipvil.data.synthetic.annotators import human_answers, question_type
from clipvil.data.synthetic.captions import captions
from clipvil.data.synthetic.entailment import hypotheses
from clipvil.data.synthetic.gqa import GQA_FAMILIES, gqa_record
from clipvil.data.synthetic.grammar import Tree, binary, ptb, sentence, words
from clipvil.data.synthetic.questions import QA, VQA_FAMILIES, ask
from clipvil.data.synthetic.render import render
from clipvil.data.synthetic.scene import Scene, sample_scene, stream
from clipvil.data.synthetic.spec import WorldSpec

JPEG_QUALITY = 90
VE_PREMISES_PER_IMAGE = 2  # captions used as SNLI-VE premises, each with one pair per label
_LABEL_CODE = {"entailment": "e", "neutral": "n", "contradiction": "c"}


def _link(src: Path, dst: Path) -> None:
    """Hard-link `dst` to `src` (a copy where the file system cannot link)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def write_image(spec: WorldSpec, scene: Scene, root: Path) -> str:
    """Render and save the JPEG and its links; returns the COCO path relative to `root`."""
    rel = layout.coco_image(scene.split, scene.image_id)
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    render(scene, spec.difficulty, stream(spec.seed, scene.image_id, "render")).save(
        path, "JPEG", quality=JPEG_QUALITY
    )
    _link(path, root / layout.gqa_image(scene.image_id))
    _link(path, root / layout.flickr_image(scene.image_id))
    return rel


def vqa_records(spec: WorldSpec, scene: Scene, qas: list[QA]) -> tuple[list[dict], list[dict]]:
    """(questions, annotations) entries of the official VQA v2 files."""
    rng = stream(spec.seed, scene.image_id, "annotate")
    questions, annotations = [], []
    for k, qa in enumerate(qas):
        qid = scene.image_id * 1000 + k
        answers = human_answers(qa.answer, spec.difficulty, rng)
        majority = Counter(a["answer"] for a in answers).most_common(1)[0][0]
        questions.append({"image_id": scene.image_id, "question": qa.question, "question_id": qid})
        annotations.append(
            {
                "question_id": qid,
                "image_id": scene.image_id,
                "question_type": question_type(qa.question, f"image {scene.image_id}"),
                "answer_type": qa.answer_type,
                "multiple_choice_answer": majority,
                "answers": answers,
            }
        )
    return questions, annotations


def caption_record(tree: Tree) -> dict[str, Any]:
    """Surface text, Karpathy tokens and both SNLI parses of one caption."""
    raw = sentence(tree)
    return {
        "raw": raw,
        "tokens": [w.lower() for w in words(tree) if w not in ",."],
        "parse": ptb(tree),
        "binary_parse": binary(tree),
    }


def snli_records(spec: WorldSpec, scene: Scene, caps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Three pairs (e / n / c) for each of the first premises; keys sorted as in the SNLI-VE files."""
    rng = stream(spec.seed, scene.image_id, "entail")
    out = []
    for k, premise in enumerate(caps[:VE_PREMISES_PER_IMAGE]):
        for label, tree in hypotheses(scene, rng):
            labels = [label]
            if rng.random() < 0.1:  # like SNLI's validated pairs: five labels, the majority gold
                others = [x for x in _LABEL_CODE if x != label]
                slip = rng.random() < 0.2 + 0.6 * spec.difficulty
                labels = [label] * (4 if slip else 5) + ([str(rng.choice(others))] if slip else [])
            out.append(
                {
                    "Flickr30K_ID": str(scene.image_id),
                    "annotator_labels": labels,
                    "captionID": f"{scene.image_id}.jpg#{k}",
                    "gold_label": label,
                    "pairID": f"{scene.image_id}.jpg#{k}r1{_LABEL_CODE[label]}",
                    "sentence1": premise["raw"],
                    "sentence1_binary_parse": premise["binary_parse"],
                    "sentence1_parse": premise["parse"],
                    "sentence2": sentence(tree),
                    "sentence2_binary_parse": binary(tree),
                    "sentence2_parse": ptb(tree),
                }
            )
    return out


def build_image(spec: WorldSpec, image_id: int, root: Path) -> dict[str, Any]:
    """Make image `image_id` on disk and return its records for every dataset file."""
    scene = sample_scene(spec, image_id)
    file_rel = write_image(spec, scene, root)
    vqa = ask(scene, VQA_FAMILIES, spec.questions_per_image, stream(spec.seed, image_id, "vqa"))
    gqa = ask(scene, GQA_FAMILIES, spec.questions_per_image, stream(spec.seed, image_id, "gqa"))
    questions, annotations = vqa_records(spec, scene, vqa)
    gqa_ids = [str(image_id * 1000 + k) for k in range(len(gqa))]
    caps = [caption_record(t) for t in captions(scene, stream(spec.seed, image_id, "caption"))]
    scene_json = scene.to_json()
    scene_json["file_name"] = Path(file_rel).name
    scene_json["vqa"] = [
        {"question_id": q["question_id"], "family": qa.family, "template": qa.template}
        for q, qa in zip(questions, vqa, strict=True)
    ]
    scene_json["gqa"] = [
        {"question_id": qid, "family": qa.family, "template": qa.template}
        for qid, qa in zip(gqa_ids, gqa, strict=True)
    ]
    return {
        "image_id": image_id,
        "split": scene.split,
        "file_name": Path(file_rel).name,
        "width": scene.width,
        "height": scene.height,
        "scene": scene_json,
        "vqa_questions": questions,
        "vqa_annotations": annotations,
        "gqa": {qid: gqa_record(qa, qid, str(image_id)) for qid, qa in zip(gqa_ids, gqa, strict=True)},
        "captions": caps,
        "snli_ve": snli_records(spec, scene, caps),
    }
