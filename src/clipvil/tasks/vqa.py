"""The VQA task: cached CLIP grids (feature store) + questions → MCAN / Pythia → BCE on soft scores.

Data: official VQA v2 files in `data_dir` (v2_OpenEnded_mscoco_<subtype>_questions.json and, for train/val,
v2_mscoco_<subtype>_annotations.json) and a feature store made by `clipvil extract` over the COCO image
folders (ids like "train2014/COCO_train2014_000000000042", see `feature_key`). Evaluation writes the official
results file ([{"question_id", "answer"}]) and the official accuracy (overall, per answer/question type).
The answer and question vocabularies are saved in the run directory, so `predict` needs only the run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from clipvil.data.answers import (
    AnswerVocab,
    build_vqa_answer_vocab,
    dense_targets,
    load_answer_vocab,
    vqa_soft_targets,
)
from clipvil.data.question_vocab import QuestionVocab
from clipvil.data.vqa import VqaSplit, read_vqa
from clipvil.encoders.store import FeatureStore
from clipvil.metrics.vqa import VqaReference, vqa_accuracy
from clipvil.models.mcan import MCAN, MCANConfig
from clipvil.models.pythia import Pythia, PythiaConfig
from clipvil.tasks.base import Batch
from clipvil.tasks.registry import RunContext, register_task

log = logging.getLogger(__name__)
ANSWERS_FILE, QUESTIONS_FILE = "answer_vocab.json", "question_vocab.json"


@dataclass
class VQAConfig:
    """The VQA task's settings (YAML section `task`)."""

    data_dir: str = "data/synthetic/vqa"  # folder of the official question/annotation JSON files
    features: str = "runs/features/vqa"  # feature store made by `clipvil extract`
    splits: dict[str, str] = field(default_factory=lambda: {"train": "train2014", "val": "val2014"})  # name →
    # data_subtype of the files (e.g. {"train": "train2014", "val": "val2014", "test": "test-dev2015"})
    feature_key: str = "{image_split}/{stem}"  # how an image's id in the store is made from its COCO file
    # name: {image_split} = train2014 / val2014 / test2015, {stem} = COCO_<split>_<id:012d>, {image_id}
    model: Literal["mcan", "pythia"] = "mcan"  # the head
    preset: str = "small"  # model preset (mcan: small | large; pythia: see PythiaConfig.preset)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # fields of the model config to change
    answer_vocab: str = ""  # folder with trainval_ans2label.json + trainval_label2ans.json ("" = build)
    answer_min_count: int = 9  # building: answers seen at least this often (VQA v2 train+val → 3129)
    question_max_tokens: int = 14  # questions are clipped to this many words
    question_min_count: int = 1  # question words seen at least this often in the train split
    feature_encoder: str = ""  # when set, the store must hold grids of this encoder (e.g. "RN50")
    feature_preset: str = ""  # when set, ... made with this input preset (the paper's VQA runs: "vqa")
    preload_features: bool = True  # read the whole feature store into memory at start (fast for small stores)


class VqaDataset(Dataset):
    """One item per question: its image's store key, token ids and soft target."""

    def __init__(self, split: VqaSplit, keys: list[str], questions: QuestionVocab, answers: AnswerVocab) -> None:
        self.split, self.keys = split, keys
        self.tokens = [questions.encode(ex.question) for ex in split.examples]
        self.targets = vqa_soft_targets(split.examples, answers)[0] if split.has_answers else None

    def __len__(self) -> int:
        return len(self.split.examples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        ex = self.split.examples[i]
        target = self.targets[i] if self.targets is not None else None
        return {"question_id": ex.question_id, "key": self.keys[i], "tokens": self.tokens[i], "target": target}


class VQATask:
    """Task protocol implementation for VQA heads over cached grids."""

    primary_metric = "accuracy"

    def __init__(self, cfg: VQAConfig, ctx: RunContext) -> None:
        self.cfg, self.ctx = cfg, ctx
        self.store = FeatureStore(cfg.features)
        for key, want in (("encoder", cfg.feature_encoder), ("preset", cfg.feature_preset)):
            have = self.store.provenance.get(key)
            if want and have != want:
                raise ValueError(f"{self.store.root}: features were made with {key} {have!r}, "
                                 f"the recipe asks for {want!r} (task.feature_{key})")
        if cfg.preload_features:
            self.store.preload()
        self._splits: dict[str, VqaSplit] = {}
        self.answers, self.questions = self._vocabularies()

    def _read(self, name: str) -> VqaSplit:
        if name not in self._splits:
            if name not in self.cfg.splits:
                raise KeyError(f"VQA task: unknown split {name!r}; configured: {sorted(self.cfg.splits)}")
            sub, root = self.cfg.splits[name], Path(self.cfg.data_dir)
            ann = root / f"v2_mscoco_{sub}_annotations.json"
            self._splits[name] = read_vqa(root / f"v2_OpenEnded_mscoco_{sub}_questions.json",
                                          ann if ann.is_file() else None)
        return self._splits[name]

    def _vocabularies(self) -> tuple[AnswerVocab, QuestionVocab]:
        out = Path(self.ctx.out_dir)
        if (out / ANSWERS_FILE).is_file() and (out / QUESTIONS_FILE).is_file():  # resume / evaluate / predict
            return AnswerVocab.from_answers(json.loads((out / ANSWERS_FILE).read_text())), QuestionVocab.load(
                out / QUESTIONS_FILE)
        if self.cfg.answer_vocab:
            d = Path(self.cfg.answer_vocab)
            answers = load_answer_vocab(d / "trainval_ans2label.json", d / "trainval_label2ans.json")
        else:
            answers = build_vqa_answer_vocab(self._read("train").examples, self.cfg.answer_min_count)
        questions = QuestionVocab.build((ex.question for ex in self._read("train").examples),
                                        self.cfg.question_min_count, self.cfg.question_max_tokens)
        if self.ctx.is_main:
            out.mkdir(parents=True, exist_ok=True)
            (out / ANSWERS_FILE).write_text(json.dumps(list(answers.label2ans)))
            questions.save(out / QUESTIONS_FILE)
        return answers, questions

    def feature_key(self, split: VqaSplit, image_id: int) -> str:
        stem = Path(split.image_filename(image_id)).stem
        return self.cfg.feature_key.format(image_split=split.image_split, stem=stem, image_id=image_id)

    def build_model(self) -> nn.Module:
        grid_dim = int(self.store.provenance["dim"])
        if self.cfg.model == "mcan":
            mcfg = MCANConfig(**{**vars(MCANConfig.preset(self.cfg.preset)), **self.cfg.model_overrides})
            return MCAN(mcfg, grid_dim=grid_dim, vocab_size=len(self.questions), n_answers=len(self.answers))
        pcfg = PythiaConfig(**{**vars(PythiaConfig.preset(self.cfg.preset)), **self.cfg.model_overrides})
        return Pythia(pcfg, grid_dim=grid_dim, vocab_size=len(self.questions), n_answers=len(self.answers))

    def dataset(self, split: str) -> Dataset:
        data = self._read(split)
        keys = [self.feature_key(data, ex.image_id) for ex in data.examples]
        missing = sorted({k for k in keys if k not in self.store})
        if missing:
            raise KeyError(f"{self.store.root}: no features for {len(missing)} image(s) of split {split!r} "
                           f"({data.questions_file}), e.g. {missing[:3]}; extract them first")
        return VqaDataset(data, keys, self.questions, self.answers)

    def collate(self, items: list[dict[str, Any]]) -> Batch:
        grid = self.store.grids([it["key"] for it in items])
        tokens = torch.zeros(len(items), max(len(it["tokens"]) for it in items), dtype=torch.long)  # [B, T]
        for i, it in enumerate(items):
            tokens[i, : len(it["tokens"])] = torch.tensor(it["tokens"])
        batch: Batch = {"grid": grid, "tokens": tokens, "ids": [it["question_id"] for it in items]}
        if items[0]["target"] is not None:
            batch["target"] = dense_targets([it["target"] for it in items], len(self.answers))  # [B, A]
        return batch

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        logits = model(batch["grid"], batch["tokens"])  # [B, A]
        target = batch["target"]  # [B, A]
        # mean over answers x n_answers: the per-question sum of BCE terms, averaged over the batch (MMF/MCAN)
        loss = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="mean") * target.shape[1]
        return loss, {}

    def predict(self, model: nn.Module, batch: Batch, k: int = 1) -> list[list[tuple[str, float]]]:
        """Top-k (answer, probability) per question of a batch."""
        probs = torch.sigmoid(model(batch["grid"], batch["tokens"]).float())  # [B, A]
        top = probs.topk(min(k, probs.shape[1]), dim=1)
        return [[(self.answers.label2ans[j], float(p)) for p, j in zip(ps, js)]
                for ps, js in zip(top.values.tolist(), top.indices.tolist())]

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[Batch], out_dir: Path | None) -> dict[str, Any]:
        preds: dict[int, str] = {}
        for batch in batches:
            for qid, top in zip(batch["ids"], self.predict(model, batch)):
                preds[qid] = top[0][0]
        results = [{"question_id": q, "answer": a} for q, a in sorted(preds.items())]
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "vqa_results.json").write_text(json.dumps(results))
        split = next((s for s in self._splits.values() if {e.question_id for e in s.examples} == set(preds)), None)
        if split is None or not split.has_answers:
            return {"accuracy": float("nan"), "n_questions": len(preds)}
        refs = {e.question_id: VqaReference(e.answers, e.question_type, e.answer_type) for e in split.examples}
        scores = vqa_accuracy(preds, refs)
        return {"accuracy": scores.overall, "n_questions": len(preds),
                **{f"type/{k}": v for k, v in scores.per_answer_type.items()},
                **{f"qtype/{k}": v for k, v in scores.per_question_type.items()}}


register_task("vqa", VQAConfig, VQATask)
