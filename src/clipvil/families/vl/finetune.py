"""CLIP-ViL_p fine-tuning: VQA v2, GQA, SNLI-VE and NLVR2 on the single-stream model, CLIP tower trainable.

- Head: pooled → Linear(H, 2H) → GELU → LayerNorm → Linear(2H, n) (`QAHead`; 768 → 1536 → n in the paper).
  VQA: BCE on soft scores over the answers (the released 3129), GQA: the same over its 1842 answers (one
  answer, score 1), both as A · mean BCE (LXMERT's ``bce_loss * n_answers``); SNLI-VE (3 classes, image +
  hypothesis) and NLVR2 (2 classes): cross-entropy.
- NLVR2: both images' grid tokens in one sequence with an image-index embedding (`VLPairModel`).
- `pretrained`: a vl_pretrain checkpoint — transformer and tower weights, and (VQA / GQA) the QA head by
  answer surgery from the pre-training answer table (`init_answer_head` with LXMERT's answer conversion).
- Every visual token is used (no sampling at fine-tuning). Batches come from one orientation bucket.
- Evaluation writes the official results file (VQA / GQA submission format via `clipvil.data.submission`,
  SNLI-VE predictions JSON, NLVR2's ``identifier,prediction`` CSV) and the official metrics (VQA accuracy,
  GQA / SNLI-VE exact-match accuracy, NLVR2 accuracy + consistency).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from clipvil.common.atomic import atomic_write_json, atomic_write_text
from clipvil.data.answers import (
    AnswerVocab,
    build_answer_vocab,
    build_vqa_answer_vocab,
    dense_targets,
    load_answer_vocab,
)
from clipvil.data.submission import write_gqa_submission, write_vqa_submission
from clipvil.data.vqa import VqaSplit
from clipvil.engine.registry import RunContext, register_task
from clipvil.engine.task import Batch, BatchLayout, ResumableSampler, TaskModule
from clipvil.families.vl.build import VLModelConfig, build_vl, load_pretrained
from clipvil.families.vl.finetune_data import (
    Example,
    FinetuneItems,
    examples_of,
    fixed_labels,
    read_split,
    train_answers,
)
from clipvil.families.vl.images import (
    ImageLoader,
    image_sizes,
    orientation_buckets,
    stack_images,
    tagged_sampler,
)
from clipvil.metrics.accuracy import gqa_accuracy, snli_ve_accuracy
from clipvil.metrics.nlvr2 import nlvr2_scores
from clipvil.metrics.vqa import VqaReference, vqa_accuracy
from clipvil.nn.losses import vqa_bce

log = logging.getLogger(__name__)
ANSWERS_FILE = "answer_vocab.json"


@dataclass
class VLFinetuneConfig(VLModelConfig):
    """The vl_finetune task's settings (YAML section `task`; model fields from VLModelConfig)."""

    dataset: str = "vqa"  # vqa | gqa | snli_ve | nlvr2
    data_dir: Path = Path("data/vqa")  # folder of the annotation files
    image_root: Path = Path("data/images")  # images (see clipvil.families.vl.finetune_data for each layout)
    splits: dict[str, list[str]] = field(default_factory=dict)  # split name → its files in data_dir (VQA:
    # [questions, annotations]; others one file); "a+b" in train.train_split joins splits
    answer_vocab: Path | None = None  # VQA / GQA: folder with trainval_ans2label.json + trainval_label2ans.json
    answer_min_count: int = 9  # building the vocabulary from answer_vocab_splits: VQA's rule (3129 on
    # train+val); GQA answers seen at least this often
    answer_vocab_splits: list[str] = field(default_factory=lambda: ["train"])  # splits whose answers build it
    nlvr2_images: str = "official"  # NLVR2 images: "official" file names below image_root, or "url"
    # (image_root / left_url, right_url: the synthetic world)
    pretrained: Path | None = None  # a vl_pretrain checkpoint (None: BERT / CLIP weights only, no V&L pre-training)
    pretrained_answer_head: bool = True  # VQA / GQA: initialise the QA head from the pre-training QA head


class VLFinetuneTask(TaskModule):
    """A CLIP-ViL_p fine-tuning run; forward(batch) → BCE (VQA, GQA) or CE (SNLI-VE, NLVR2)."""

    primary_metric = "accuracy"
    higher_is_better = True

    def __init__(self, cfg: VLFinetuneConfig, ctx: RunContext) -> None:
        super().__init__()
        self.cfg, self.ctx = cfg, ctx
        self._splits: dict[str, Any] = {}
        self.answers = self._answers()
        self.pair = cfg.dataset == "nlvr2"
        self.model, self.codec = build_vl(cfg, n_answers=len(self.answers), pretrain_heads=False, pair=self.pair)
        if cfg.pretrained is not None:
            surgery = cfg.pretrained_answer_head and fixed_labels(cfg.dataset) is None
            counts = load_pretrained(self.model, cfg.pretrained, self.answers.label2ans, surgery)
            log.info("initialised from %s: %d tensors, %d answers", cfg.pretrained, counts["copied"],
                     counts["answers_copied"])
        tower = self.model.visual
        self.loader = ImageLoader(cfg.image_size, tower.mean, tower.std)

    # ------------------------------------------------------------------------------------------- data
    def _read(self, name: str) -> Any:
        if name not in self._splits:
            if name not in self.cfg.splits:
                raise KeyError(f"vl_finetune: unknown split {name!r}; configured: {sorted(self.cfg.splits)}")
            self._splits[name] = read_split(self.cfg.dataset, [Path(self.cfg.data_dir) / f
                                                               for f in self.cfg.splits[name]])
        return self._splits[name]

    def _answers(self) -> AnswerVocab:
        labels = fixed_labels(self.cfg.dataset)
        if labels is not None:
            return AnswerVocab.from_answers(labels)
        out = Path(self.ctx.out_dir) / ANSWERS_FILE
        self.ctx.prepare_once(out, lambda p: atomic_write_json(p, list(self._build_answers().label2ans)))
        return AnswerVocab.from_answers(json.loads(out.read_text()))

    def _build_answers(self) -> AnswerVocab:
        cfg = self.cfg
        if cfg.answer_vocab is not None:
            d = Path(cfg.answer_vocab)
            return load_answer_vocab(d / "trainval_ans2label.json", d / "trainval_label2ans.json")
        names = [part for name in cfg.answer_vocab_splits for part in name.split("+")]
        if cfg.dataset == "vqa":
            return build_vqa_answer_vocab([e for n in names for e in self._read(n).examples], cfg.answer_min_count)
        return build_answer_vocab([a for n in names for a in train_answers(cfg.dataset, self._read(n))],
                                  cfg.answer_min_count)

    def examples(self, split: str) -> list[Example]:
        """The examples of a split (joined with '+')."""
        return [ex for name in split.split("+") for ex in examples_of(
            self.cfg.dataset, self._read(name), self.cfg.image_root, self.answers, self.cfg.nlvr2_images)]

    def dataset(self, split: str) -> Dataset:
        return FinetuneItems(self.examples(split), self.codec, self.loader)

    def batch_sampler(self, split: str, dataset: Dataset, layout: BatchLayout) -> ResumableSampler:
        """One orientation bucket per batch (NLVR2: per (left, right) orientation pair)."""
        examples = dataset.examples  # type: ignore[attr-defined]
        n_images = len(examples[0].images)
        sizes = image_sizes([p for ex in examples for p in ex.images], Path(self.ctx.out_dir), self.ctx)
        flat = orientation_buckets(sizes)
        buckets = [sum(flat[i * n_images + k] << k for k in range(n_images)) for i in range(len(examples))]
        return tagged_sampler(buckets, layout)

    def collate(self, items: list[dict[str, Any]]) -> Batch:
        ids, att = self.codec.pad([it["ids"] for it in items])  # [B, T] x2
        pixels = stack_images([p for it in items for p in it["pixels"]])  # [B * I, 3, H, W]
        if self.pair:
            pixels = pixels.view(len(items), 2, *pixels.shape[1:])  # [B, 2, 3, H, W]
        batch: Batch = {"pixels": pixels, "content_hw": [hw for it in items for hw in it["content_hw"]],
                        "input_ids": ids, "attention_mask": att, "ids": [it["key"] for it in items]}
        targets = [it["target"] for it in items]
        if all(t is not None for t in targets):
            if fixed_labels(self.cfg.dataset) is None:
                batch["target"] = dense_targets(targets, len(self.answers))  # [B, A]
            else:
                batch["target"] = torch.tensor(targets, dtype=torch.long)  # [B]
        return batch

    # ------------------------------------------------------------------------------------------- training
    def logits(self, batch: Batch) -> torch.Tensor:
        """[B, n] answer / class logits, every visual token used."""
        return self.model(batch["pixels"], batch["content_hw"], batch["input_ids"], batch["attention_mask"])

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        logits = self.logits(batch).float()  # [B, n]
        target = batch["target"]
        if target.dim() == 2:
            return vqa_bce(logits, target), {}
        loss = F.cross_entropy(logits, target)
        return loss, {"train_accuracy": float((logits.argmax(-1) == target).float().mean())}

    def artifacts(self) -> dict[str, Any]:
        return {"answers": list(self.answers.label2ans), "dataset": self.cfg.dataset,
                "text_tower": self.cfg.text_tower, "vocab_size": self.codec.vocab_size}

    # ------------------------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self, batches: Iterable[Batch], split: str, out_dir: Path | None) -> dict[str, Any]:
        preds: dict[Any, str] = {}
        for batch in batches:
            top = self.logits(batch).float().argmax(-1).tolist()  # [B]
            preds.update({k: self.answers.label2ans[j] for k, j in zip(batch["ids"], top)})
        names = split.split("+")
        scorer = {"vqa": self._score_vqa, "gqa": self._score_gqa, "snli_ve": self._score_snli_ve,
                  "nlvr2": self._score_nlvr2}[self.cfg.dataset]
        return scorer(preds, names, out_dir)

    def _score_vqa(self, preds: dict[Any, str], names: list[str], out_dir: Path | None) -> dict[str, Any]:
        splits: list[VqaSplit] = [self._read(n) for n in names]
        if out_dir is not None:
            for n, s in zip(names, splits):
                own = {e.question_id: preds[e.question_id] for e in s.examples}
                target = Path(out_dir) / f"vqa_results_{n}.json"
                if s.data_subtype == "test-dev2015":  # the server wants all of test2015: plain results
                    atomic_write_json(target, [{"question_id": q, "answer": a} for q, a in own.items()])
                else:
                    write_vqa_submission(target, own, s.questions_file)
        if not all(s.has_answers for s in splits):
            return {"accuracy": float("nan"), "n": len(preds)}
        refs = {e.question_id: VqaReference(e.answers, e.question_type, e.answer_type)
                for s in splits for e in s.examples}
        scores = vqa_accuracy(preds, refs)
        return {"accuracy": scores.overall, "n": len(preds),
                **{f"type/{k}": v for k, v in scores.per_answer_type.items()}}

    def _score_gqa(self, preds: dict[Any, str], names: list[str], out_dir: Path | None) -> dict[str, Any]:
        splits = [self._read(n) for n in names]
        if out_dir is not None:
            for n, s in zip(names, splits):
                own = {q.question_id: preds[q.question_id] for q in s.questions}
                write_gqa_submission(Path(out_dir) / f"gqa_predictions_{n}.json", own, s.files[0].parent
                                     if len(s.files) > 1 else s.files[0])
        questions = [q for s in splits for q in s.questions]
        if any(q.answer is None for q in questions):
            return {"accuracy": float("nan"), "n": len(preds)}
        answers = {q.question_id: q.answer for q in questions}
        types = {q.question_id: q.structural for q in questions} if all(q.structural for q in questions) else None
        return {**gqa_accuracy(preds, answers, types), "n": len(preds)}  # type: ignore[arg-type]

    def _score_snli_ve(self, preds: dict[Any, str], names: list[str], out_dir: Path | None) -> dict[str, Any]:
        pairs = [p for n in names for p in self._read(n).pairs]
        if out_dir is not None:
            atomic_write_json(Path(out_dir) / "snli_ve_predictions.json",
                              [{"pairID": p.pair_id, "prediction": preds[p.pair_id]} for p in pairs])
        if any(p.label is None for p in pairs):
            return {"accuracy": float("nan"), "n": len(preds)}
        scores = snli_ve_accuracy(preds, {p.pair_id: p.label for p in pairs})
        return {"accuracy": scores["accuracy"], "n": scores["n"],
                **{f"label/{k}": v for k, v in scores["per_label"].items()}}

    def _score_nlvr2(self, preds: dict[Any, str], names: list[str], out_dir: Path | None) -> dict[str, Any]:
        examples = [e for n in names for e in self._read(n).examples]
        if out_dir is not None:
            rows = "".join(f"{e.identifier},{preds[e.identifier]}\n" for e in examples)
            atomic_write_text(Path(out_dir) / "nlvr2_predictions.csv", rows)
        if any(e.label is None for e in examples):
            return {"accuracy": float("nan"), "n": len(preds)}
        truth = {k: v == "True" for k, v in preds.items()}
        scores = nlvr2_scores(truth, {e.identifier: bool(e.label) for e in examples})
        return {"accuracy": scores.accuracy, "consistency": scores.consistency, "n": scores.n_examples}


def _make_task(cfg: VLFinetuneConfig, ctx: RunContext) -> VLFinetuneTask:
    return VLFinetuneTask(cfg, ctx)


register_task("vl_finetune", VLFinetuneConfig, _make_task)

__all__ = ["VLFinetuneConfig", "VLFinetuneTask"]
