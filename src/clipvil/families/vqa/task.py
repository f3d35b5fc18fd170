"""The VQA task: cached CLIP grids (feature stores) + questions → a registered VQA head → BCE on soft scores.

Data: official VQA v2 files in `data_dir` (v2_OpenEnded_mscoco_<subtype>_questions.json and, for train/val,
v2_mscoco_<subtype>_annotations.json), other VQA-format files by name (`split_files`: Visual Genome QA as
mcan-vqa / MMF distribute it), and feature stores made by `clipvil extract` (ids like
"train2014/COCO_train2014_000000000042", see `feature_key`). A split name may join several splits:
`train+val+vg` (mcan-vqa's default training set). Evaluation writes the official results file
([{"question_id", "answer"}]) and the official accuracy (overall, per answer type and question type).
The vocabularies are saved in the run directory and in every checkpoint, so `predict` needs only a checkpoint.
"""

from __future__ import annotations

import json
import logging
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import ConcatDataset, Dataset

from clipvil.common.atomic import atomic_write_json
from clipvil.data.answers import AnswerVocab, build_vqa_answer_vocab, dense_targets, load_answer_vocab
from clipvil.data.question_vocab import QuestionVocab, question_tokens
from clipvil.data.submission import write_vqa_submission
from clipvil.data.vqa import VqaSplit, read_vqa
from clipvil.engine.grid_source import GridSource
from clipvil.engine.models import build_model
from clipvil.engine.registry import RunContext, register_task
from clipvil.engine.task import Batch, TaskModule
from clipvil.families.vqa.data import VqaDataset, apply_word_vectors
from clipvil.families.vqa.losses import get_loss
from clipvil.metrics.vqa import VqaReference, vqa_accuracy
from clipvil.types import GridFeatures

log = logging.getLogger(__name__)
ANSWERS_FILE, QUESTIONS_FILE = "answer_vocab.json", "question_vocab.json"
SUBMISSION_FILE = "vqa_submission.json"  # what the VQA evaluation server (EvalAI) takes
KEY_FIELDS = {"image_split", "stem", "image_id"}


@dataclass
class VQAConfig:
    """The VQA task's settings (YAML section `task`)."""

    data_dir: Path = Path("data/synthetic/vqa")  # folder of the official question/annotation JSON files
    features: list[Path] = field(default_factory=lambda: [Path("runs/features/vqa")])  # feature store(s) made
    # by `clipvil extract`; several = their grids concatenated channel-wise (the CLIP + ImageNet "plugin")
    extra_features: list[Path] = field(default_factory=list)  # more stores of the same encoder and preset,
    # searched as one with the first (e.g. Visual Genome images beside COCO's)
    splits: dict[str, str] = field(default_factory=lambda: {"train": "train2014", "val": "val2014"})  # name →
    # data_subtype of the official files (e.g. {"test": "test-dev2015"}); a given mapping adds to these
    split_files: dict[str, list[str]] = field(default_factory=dict)  # name → [questions.json, annotations.json]
    # in data_dir, for VQA-format files with other names (e.g. {vg: [VG_questions.json, VG_annotations.json]})
    feature_key: str = "{image_split}/{stem}"  # an image's id in the store, from {image_split} (train2014 /
    # val2014 / test2015), {stem} (COCO_<split>_<id:012d>) and {image_id}
    split_feature_keys: dict[str, str] = field(default_factory=dict)  # per split (e.g. {vg: "vg/{image_id}"})
    model: str = "mcan"  # the head, by registered name (mcan, pythia, movie_mcan)
    preset: str = "small"  # the head's preset (mcan: small | large; pythia: pythia | butd; movie_mcan: default)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # fields of the head's config to change
    loss: str = "bce"  # registered loss: bce (MCAN, Pythia) | triple_bce (MoVie+MCAN's triple_logit_bce)
    answer_vocab: Path | None = None  # folder with trainval_ans2label.json + trainval_label2ans.json (None: build)
    answer_min_count: int = 9  # building: answers seen at least this often (VQA v2 train+val → 3129)
    answer_vocab_splits: list[str] = field(default_factory=lambda: ["train"])  # splits whose answers build it
    question_max_tokens: int = 14  # questions are clipped to this many words
    question_min_count: int = 1  # question words seen at least this often
    question_vocab_splits: list[str] = field(default_factory=lambda: ["train"])  # splits whose questions build
    # the word vocabulary (mcan-vqa: train, val, test and vg)
    word_vectors: Path | None = None  # GloVe .txt (or .npy beside a vocabulary) filling the word embedding
    word_vectors_vocab: Path | None = None  # the vocabulary of a .npy word_vectors file
    feature_encoder: str = ""  # when set, the stores must hold grids of this encoder (e.g. "RN50")
    feature_preset: str = ""  # ... made with this input preset (the paper's VQA runs: "vqa")
    feature_layer: str = ""  # ... taken from this layer (e.g. "last" for ViT: the final block, after ln_post)
    preload_features: bool | None = None  # read the stores into memory (None: when they fit preload_max_gb)
    preload_max_gb: float = 4.0  # the size rule of preload_features: None
    submission: bool = True  # evaluating a split without annotations (test2015) also writes vqa_submission.json
    # for the evaluation server, refusing (ValueError) unless every test2015 question is answered — the
    # server needs all of them even for test-dev, so a test-dev2015 split is refused; false: results only


class VQATask(TaskModule):
    """A VQA head over cached grids; forward(batch) → BCE loss on soft scores."""

    primary_metric = "accuracy"
    higher_is_better = True

    def __init__(self, cfg: VQAConfig, ctx: RunContext) -> None:
        super().__init__()
        self.cfg, self.ctx = cfg, ctx
        _check_key_template(cfg.feature_key, "task.feature_key")
        for name, template in cfg.split_feature_keys.items():
            _check_key_template(template, f"task.split_feature_keys.{name}")
        self.source = GridSource(cfg.features, cfg.extra_features, self._expected(), cfg.preload_features,
                                 cfg.preload_max_gb)
        self._splits: dict[str, VqaSplit] = {}
        self.answers, self.questions = self._vocabularies()
        try:
            self.model = build_model(cfg.model, cfg.preset, cfg.model_overrides, grid_dim=self.source.dim,
                                     vocab_size=len(self.questions), n_answers=len(self.answers))
        except (ValueError, KeyError) as err:
            raise ValueError(f"task.model / task.preset / task.model_overrides: {err.args[0]}") from err
        self.criterion = get_loss(cfg.loss)
        if cfg.word_vectors is not None:
            apply_word_vectors(self.model, self.questions, cfg.word_vectors, cfg.word_vectors_vocab)

    def _expected(self) -> dict[str, str]:
        cfg = self.cfg
        return {"encoder": cfg.feature_encoder, "preset": cfg.feature_preset, "layer": cfg.feature_layer}

    def _read(self, name: str) -> VqaSplit:
        if name not in self._splits:
            root = Path(self.cfg.data_dir)
            if name in self.cfg.split_files:
                files = [root / f for f in self.cfg.split_files[name]]
                self._splits[name] = read_vqa(files[0], files[1] if len(files) > 1 else None)
            elif name in self.cfg.splits:
                sub = self.cfg.splits[name]
                ann = root / f"v2_mscoco_{sub}_annotations.json"
                self._splits[name] = read_vqa(root / f"v2_OpenEnded_mscoco_{sub}_questions.json",
                                              ann if ann.is_file() else None)
            else:
                known = sorted(set(self.cfg.splits) | set(self.cfg.split_files))
                raise KeyError(f"VQA task: unknown split {name!r}; configured: {known} (join with '+')")
        return self._splits[name]

    def _vocabularies(self) -> tuple[AnswerVocab, QuestionVocab]:
        out = Path(self.ctx.out_dir)
        self.ctx.prepare_once(out / ANSWERS_FILE, lambda p: atomic_write_json(p, list(self._build_answers().label2ans)))
        self.ctx.prepare_once(out / QUESTIONS_FILE, lambda p: atomic_write_json(p, self._build_questions()))
        answers = AnswerVocab.from_answers(json.loads((out / ANSWERS_FILE).read_text()))
        return answers, QuestionVocab.load(out / QUESTIONS_FILE)

    def _build_answers(self) -> AnswerVocab:
        if self.cfg.answer_vocab is not None:
            d = Path(self.cfg.answer_vocab)
            return load_answer_vocab(d / "trainval_ans2label.json", d / "trainval_label2ans.json")
        names = [part for name in self.cfg.answer_vocab_splits for part in name.split("+")]
        examples = [ex for name in names for ex in self._read(name).examples]
        return build_vqa_answer_vocab(examples, self.cfg.answer_min_count)

    def _build_questions(self) -> dict[str, Any]:
        names = [part for name in self.cfg.question_vocab_splits for part in name.split("+")]
        texts = (ex.question for name in names for ex in self._read(name).examples)
        vocab = QuestionVocab.build(texts, self.cfg.question_min_count, self.cfg.question_max_tokens)
        return {"words": list(vocab.words), "max_tokens": vocab.max_tokens}

    def feature_key(self, split_name: str, split: VqaSplit, image_id: int) -> str:
        """The store id of an image of `split` (named `split_name` in the config)."""
        template = self.cfg.split_feature_keys.get(split_name, self.cfg.feature_key)
        stem = Path(split.image_filename(image_id)).stem
        return template.format(image_split=split.image_split, stem=stem, image_id=image_id)

    def dataset(self, split: str) -> Dataset:
        parts = [self._dataset_part(name) for name in split.split("+")]
        return parts[0] if len(parts) == 1 else ConcatDataset(parts)

    def _dataset_part(self, name: str) -> VqaDataset:
        data = self._read(name)
        keys = [self.feature_key(name, data, ex.image_id) for ex in data.examples]
        missing = self.source.missing(keys)
        if missing:
            raise KeyError(f"{self.cfg.features[0]}: no features for {len(missing)} image(s) of split {name!r} "
                           f"({data.questions_file}), e.g. {missing[:3]}; extract them first")
        return VqaDataset(data, keys, self.questions, self.answers)

    def collate(self, items: list[dict[str, Any]]) -> Batch:
        grid = self.source.grids([it["key"] for it in items])
        batch: Batch = {"grid": grid, "tokens": question_tokens([it["tokens"] for it in items]),
                        "ids": [it["question_id"] for it in items]}
        if items[0]["target"] is not None:
            batch["target"] = dense_targets([it["target"] for it in items], len(self.answers))  # [B, A]
        return batch

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        return self.criterion(self.model, batch["grid"], batch["tokens"], batch["target"]), {}

    def artifacts(self) -> dict[str, Any]:
        return {"answers": list(self.answers.label2ans),
                "question_vocab": {"words": list(self.questions.words), "max_tokens": self.questions.max_tokens},
                "features": self.source.provenance}

    @torch.no_grad()
    def evaluate(self, batches: Iterable[Batch], split: str, out_dir: Path | None) -> dict[str, Any]:
        preds: dict[int, str] = {}
        for batch in batches:
            for qid, top in zip(batch["ids"], top_answers(self.model, self.answers, batch["grid"], batch["tokens"])):
                preds[qid] = top[0][0]
        results = [{"question_id": q, "answer": a} for q, a in sorted(preds.items())]
        if out_dir is not None:
            atomic_write_json(out_dir / "vqa_results.json", results)
        examples = [ex for name in split.split("+") for ex in self._read(name).examples]
        if not all(self._read(name).has_answers for name in split.split("+")):
            if out_dir is not None and self.cfg.submission:
                self._write_submission(split, preds, out_dir)
            return {"accuracy": float("nan"), "n_questions": len(preds)}
        refs = {e.question_id: VqaReference(e.answers, e.question_type, e.answer_type) for e in examples}
        scores = vqa_accuracy(preds, refs)
        return {"accuracy": scores.overall, "n_questions": len(preds),
                **{f"type/{k}": v for k, v in scores.per_answer_type.items()},
                **{f"qtype/{k}": v for k, v in scores.per_question_type.items()}}


    def _write_submission(self, split: str, preds: dict[int, str], out_dir: Path) -> None:
        """The server's file, checked complete against the split's questions file (clipvil.data.submission)."""
        retry = " (vqa_results.json is written; task.submission=false skips the submission file)"
        if "+" in split:
            raise ValueError(f"VQA task: split {split!r}: a server submission is one test2015 split{retry}")
        try:
            n = write_vqa_submission(out_dir / SUBMISSION_FILE, preds, self._read(split).questions_file)
        except ValueError as err:
            raise ValueError(f"VQA task: split {split!r}: {err}{retry}") from None
        log.info("wrote %s (%d answers): the file to upload to the VQA evaluation server", out_dir / SUBMISSION_FILE, n)


def top_answers(model: nn.Module, answers: AnswerVocab, grid: GridFeatures, tokens: torch.Tensor,
                k: int = 1) -> list[list[tuple[str, float]]]:
    """Top-k (answer, probability) per question of a batch."""
    probs = torch.sigmoid(model(grid, tokens).float())  # [B, A]
    top = probs.topk(min(k, probs.shape[1]), dim=1)
    return [[(answers.label2ans[j], float(p)) for p, j in zip(ps, js)]
            for ps, js in zip(top.values.tolist(), top.indices.tolist())]


def _check_key_template(template: str, option: str) -> None:
    fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    unknown = sorted(fields - KEY_FIELDS)
    if unknown or not fields:
        raise ValueError(f"{option}: {template!r} uses unknown field(s) {unknown}; known: "
                         f"{{{'}, {'.join(sorted(KEY_FIELDS))}}}" if unknown else
                         f"{option}: {template!r} uses no field; known: {sorted(KEY_FIELDS)}")


def _make_task(cfg: VQAConfig, ctx: RunContext) -> VQATask:
    return VQATask(cfg, ctx)


def _predictor(cfg: VQAConfig, artifacts: dict[str, Any], device: torch.device) -> Any:
    from clipvil.families.vqa.predict import VqaPredictor

    return VqaPredictor.from_artifacts(cfg, artifacts, device)


register_task("vqa", VQAConfig, _make_task, predictor=_predictor)
