"""Zero-shot VQA with CLIP, as the paper's Table 7: every candidate answer becomes the text "[question]
[answer]" (with or without a prompt template), and the answer whose text embedding is closest to the image
embedding wins. Scored with the official VQA accuracy, overall and per answer type, per template.

- Candidates: the answer vocabulary (a released `trainval_label2ans.json` in `answer_vocab`, or built from the
  `answer_splits` with the VQA rule at `answer_min_count`), optionally the `max_answers` most frequent.
- Templates (`clipvil.data.prompts`): "plain" = "{question} {answer}" (no template), "qa" = "question: ...
  answer: ...", or any format string with {answer} (and {question}); the first listed is the primary
  `accuracy`, each also reported as `<template>/accuracy` and `<template>/type/<answer type>`.
- Cost: a question-dependent template encodes questions x answers texts (3129 per VQA question); templates
  without {question} encode the answers once.

No training: `clipvil evaluate configs/retrieval/zeroshot_vqa_synthetic.yaml --weights W` (or --checkpoint of a
clip run). Evaluation writes `vqa_results_<template>.json` in the official results format.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from clipvil.common.atomic import atomic_write_json
from clipvil.data.answers import AnswerVocab, build_vqa_answer_vocab, load_answer_vocab
from clipvil.data.prompts import resolve_template, uses_question, vqa_candidate_batch
from clipvil.data.vqa import VqaSplit, read_vqa
from clipvil.encoders.images import ImageDecodeError, load_image
from clipvil.engine.registry import RunContext, register_task
from clipvil.engine.task import Batch
from clipvil.families.clip.retrieval import ZeroShotTask
from clipvil.metrics.vqa import VqaReference, vqa_accuracy
from clipvil.metrics.zero_shot import zero_shot_answers


@dataclass
class ZeroShotVQAConfig:
    """Zero-shot VQA settings (YAML section `task`)."""

    model: str = "ViT-B-32"  # open_clip architecture
    weights: Path | None = None  # local weight file; None: random weights (or a --checkpoint's)
    quick_gelu: bool | None = None  # None: QuickGELU for OpenAI archives, else the architecture's default
    data_dir: Path = Path("data/synthetic/vqa")  # the official question / annotation JSON files
    image_root: Path = Path("data/synthetic/coco")  # COCO images: <image_root>/<train2014|val2014>/COCO_...jpg
    splits: dict[str, str] = field(default_factory=lambda: {"train": "train2014", "val": "val2014"})  # name ->
    # data_subtype of the official files
    answer_vocab: Path | None = None  # folder with trainval_label2ans.json (None: build from answer_splits)
    answer_splits: list[str] = field(default_factory=lambda: ["train"])  # splits whose answers build it
    answer_min_count: int = 1  # building: answers of at least this many questions (VQA v2: 9 -> 3129)
    max_answers: int = 0  # the first N answers of the vocabulary only (0: all)
    templates: list[str] = field(default_factory=lambda: ["plain", "qa"])  # the first gives `accuracy`
    text_batch: int = 2048  # candidate texts per text-encoder call


class VqaImages(Dataset):
    """Questions with their image: item i -> {"image": [3, H, W], "question": str, "question_id": int}."""

    def __init__(self, split: VqaSplit, image_root: Path, transform: Any) -> None:
        self.split, self.root, self.transform = split, Path(image_root) / split.image_split, transform

    def __len__(self) -> int:
        return len(self.split.examples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        ex = self.split.examples[index]
        path = self.root / self.split.image_filename(ex.image_id)
        try:
            image = load_image(path)
        except ImageDecodeError as err:
            raise ImageDecodeError(f"{err} (question {ex.question_id} of {self.split.questions_file})") from None
        return {"image": self.transform(image), "question": ex.question, "question_id": ex.question_id}


def _slug(template: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", template).strip("_") or "template"


class ZeroShotVQATask(ZeroShotTask):
    """CLIP picks the answer whose "[question] [answer]" text matches the image best."""

    primary_metric = "accuracy"
    higher_is_better = True

    def __init__(self, cfg: ZeroShotVQAConfig, ctx: RunContext) -> None:
        super().__init__()
        self.cfg = cfg
        for template in cfg.templates:
            resolve_template(template)  # a bad template fails before any work
        if not cfg.templates:
            raise ValueError("task.templates: name at least one prompt template")
        self._build_clip(cfg.model, cfg.weights, cfg.quick_gelu)
        self._splits: dict[str, VqaSplit] = {}
        vocab = self._answers()
        self.answers = list(vocab.label2ans[: cfg.max_answers or None])

    def _read(self, name: str) -> VqaSplit:
        if name not in self.cfg.splits:
            raise KeyError(f"zeroshot_vqa task: unknown split {name!r}; configured: {sorted(self.cfg.splits)}")
        if name not in self._splits:
            sub, root = self.cfg.splits[name], Path(self.cfg.data_dir)
            ann = root / f"v2_mscoco_{sub}_annotations.json"
            self._splits[name] = read_vqa(root / f"v2_OpenEnded_mscoco_{sub}_questions.json",
                                          ann if ann.is_file() else None)
        return self._splits[name]

    def _answers(self) -> AnswerVocab:
        if self.cfg.answer_vocab is not None:
            d = Path(self.cfg.answer_vocab)
            return load_answer_vocab(d / "trainval_ans2label.json", d / "trainval_label2ans.json")
        examples = [ex for name in self.cfg.answer_splits for ex in self._read(name).examples]
        return build_vqa_answer_vocab(examples, self.cfg.answer_min_count)

    def dataset(self, split: str) -> Dataset:
        return VqaImages(self._read(split), self.cfg.image_root, self.transform)

    def collate(self, items: list[dict[str, Any]]) -> Batch:
        return {"image": torch.stack([it["image"] for it in items]),  # [B, 3, H, W]
                "questions": [it["question"] for it in items], "ids": [it["question_id"] for it in items]}

    def artifacts(self) -> dict[str, Any]:
        return {"answers": self.answers, "templates": list(self.cfg.templates)}

    def _encode(self, texts: list[str]) -> np.ndarray:
        device = next(self.model.parameters()).device
        out = [self.model.encode_text(self.tokenize(texts[i:i + self.cfg.text_batch]).to(device), normalize=True)
               .float().cpu() for i in range(0, len(texts), self.cfg.text_batch)]
        return torch.cat(out).numpy()  # [N, D]

    def _predict(self, image_emb: np.ndarray, questions: list[str], template: str,
                 shared: dict[str, np.ndarray]) -> list[str]:
        if not uses_question(template):
            if template not in shared:
                shared[template] = self._encode(vqa_candidate_batch([], self.answers, template)[0])  # [A, D]
            return zero_shot_answers(image_emb, shared[template], self.answers)
        texts = [t for row in vqa_candidate_batch(questions, self.answers, template) for t in row]
        text_emb = self._encode(texts).reshape(len(questions), len(self.answers), -1)  # [B, A, D]
        return zero_shot_answers(image_emb, text_emb, self.answers)

    @torch.no_grad()
    def evaluate(self, batches: Iterable[Batch], split: str, out_dir: Path | None) -> dict[str, Any]:
        preds: dict[str, dict[int, str]] = {t: {} for t in self.cfg.templates}
        shared: dict[str, np.ndarray] = {}
        for batch in batches:
            image_emb = self.model.encode_image(batch["image"], normalize=True).float().cpu().numpy()  # [B, D]
            for template in self.cfg.templates:
                for qid, answer in zip(batch["ids"], self._predict(image_emb, batch["questions"], template, shared)):
                    preds[template][qid] = answer
        data = self._read(split)
        metrics: dict[str, Any] = {"n_questions": len(data.examples), "n_answers": len(self.answers)}
        for i, template in enumerate(self.cfg.templates):
            if out_dir is not None:
                results = [{"question_id": q, "answer": a} for q, a in sorted(preds[template].items())]
                atomic_write_json(out_dir / f"vqa_results_{_slug(template)}.json", results)
            if not data.has_answers:
                continue
            refs = {e.question_id: VqaReference(e.answers, e.question_type, e.answer_type) for e in data.examples}
            scores = vqa_accuracy(preds[template], refs)
            metrics[f"{template}/accuracy"] = scores.overall
            metrics.update({f"{template}/type/{k}": v for k, v in scores.per_answer_type.items()})
            if i == 0:
                metrics["accuracy"] = scores.overall
        metrics.setdefault("accuracy", float("nan"))
        return metrics


def _make_task(cfg: ZeroShotVQAConfig, ctx: RunContext) -> ZeroShotVQATask:
    return ZeroShotVQATask(cfg, ctx)


register_task("zeroshot_vqa", ZeroShotVQAConfig, _make_task)
