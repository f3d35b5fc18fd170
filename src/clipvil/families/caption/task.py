"""The captioning task: cached CLIP grids (feature stores) → the Transformer captioner, trained with token
cross-entropy ("xe"), then self-critical sequence training with a CIDEr-D reward ("scst"), as CLIP-ViL trains
self-critical.pytorch's TransformerModel (configs/phrase1 → phrase2).

Data: Karpathy's ``dataset_coco.json`` (`karpathy_file`: splits train = train + restval, val, test) and/or
COCO caption JSON files by split name (`coco_files`, e.g. captions_val2014.json; an image-info file without
annotations, such as image_info_test2014.json, is a split with no references: the test server's). Grids come
from feature stores made by `clipvil extract` (paper: preset `caption`, 448×448 → 14×14), keyed like
"val2014/COCO_val2014_000000391895" (`feature_key`).

- The caption vocabulary (words seen more than `vocab_min_count` times in the training captions, at most
  `max_caption_words` words a caption) is built once, saved as <run>/caption_vocab.json and in every checkpoint.
- An item is an image. XE trains on `seq_per_img` of its captions at once (5: every COCO caption of most
  images), as rows of the captioner's rows-per-image layout, so the grid is encoded once per image
  (self-critical.pytorch's seq_per_img); batch sizes count images.
- SCST (phases named in `scst_phases`): `scst_samples` sampled captions per image, CIDEr-D against all its
  references with document frequencies of the training references (computed once, cached as
  <run>/cider_df.npz), baseline the greedy caption's reward or the mean of the other samples
  (see `clipvil.families.caption.reward`). The phase switch and the SCST optimizer are the engine's `phases:`.
- evaluate(split) decodes with beam search (`beam_size`), writes caption_results.json ([{"image_id",
  "caption"}], what pycocotools' COCO.loadRes reads) and scores BLEU-1..4, METEOR, ROUGE-L, CIDEr (SPICE when
  its jars are present) with pycocoevalcap; CIDEr picks best.pt. A split without references also gets the
  COCO server's file name, captions_<folder>_<server_alg>_results.json, and metrics NaN.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from clipvil.common.atomic import atomic_write, atomic_write_json
from clipvil.data.samplers import BucketBatchSampler
from clipvil.data.tokenizers import CaptionVocab
from clipvil.engine.grid_source import GridSource
from clipvil.engine.models import build_model
from clipvil.engine.registry import RunContext, register_task
from clipvil.engine.task import Batch, BatchLayout, ResumableSampler, TaskModule
from clipvil.families.caption.data import (
    CaptionDataset,
    CaptionSplit,
    caption_tensor,
    check_key_template,
    feature_key,
    length_buckets,
    read_coco_split,
    read_karpathy_split,
    select_captions,
)
from clipvil.families.caption.predict import CaptionPredictor, decode_captions
from clipvil.families.caption.reward import (
    DF_FILE,
    CaptionReward,
    corpus_fingerprint,
    scst_baseline,
    scst_loss,
    sentences,
    xe_loss,
)
from clipvil.metrics.caption import caption_scores
from clipvil.nn.decoding import DecodeOutput, greedy_decode, sample_decode

log = logging.getLogger(__name__)
VOCAB_FILE = "caption_vocab.json"
RESULTS_FILE = "caption_results.json"


@dataclass
class CaptionConfig:
    """The captioning task's settings (YAML section `task`)."""

    karpathy_file: Path | None = Path("data/synthetic/captions/dataset_coco.json")  # Karpathy's dataset_coco.json
    # (splits train [+ restval], val, test); None: only coco_files
    coco_files: dict[str, Path] = field(default_factory=dict)  # split name → COCO caption JSON (references) or
    # image-info JSON (no references: a test-server split), e.g. {test2014: .../image_info_test2014.json}
    image_folders: dict[str, str] = field(default_factory=dict)  # split of coco_files → its image folder
    # ({filepath} of feature_key and the server results name), e.g. {test2014: test2014}
    feature_key: str = "{filepath}/{stem}"  # an image's id in the store from {filepath} (Karpathy's filepath,
    # e.g. val2014), {stem} (COCO_val2014_000000391895) and {image_id}
    features: list[Path] = field(default_factory=lambda: [Path("runs/features/caption")])  # feature store(s) of
    # `clipvil extract`; several = grids concatenated channel-wise (the plugin)
    extra_features: list[Path] = field(default_factory=list)  # more stores searched as one with the first
    feature_encoder: str = ""  # when set, the stores must hold grids of this encoder (e.g. "RN50")
    feature_preset: str = ""  # ... made with this input preset (the paper: "caption", 448x448)
    feature_layer: str = ""  # ... from this layer
    preload_features: bool | None = None  # read the stores into memory (None: when they fit preload_max_gb)
    preload_max_gb: float = 4.0  # the size rule of preload_features: None
    model: str = "transformer_captioner"  # the captioner, by registered name
    preset: str = "paper"  # its preset (paper: 6+6 layers, d 512; tiny)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # fields of its config to change
    vocab: Path | None = None  # a caption_vocab.json to use (e.g. of the XE run an SCST run starts from); None: build
    vocab_min_count: int = 5  # building: words seen more than this many times in the training captions
    max_caption_words: int = 16  # captions are clipped to this many words (vocabulary and training)
    vocab_splits: list[str] = field(default_factory=lambda: ["train"])  # splits whose captions build it
    seq_per_img: int = 5  # XE: caption rows per image and update (more captions: a random subset; fewer: repeats)
    length_bucket_width: int = 0  # > 0: batches of images whose longest caption has the same words // width
    scst_phases: list[str] = field(default_factory=lambda: ["scst"])  # phases trained with SCST (others: XE)
    scst_samples: int = 5  # SCST: sampled captions per image (self-critical's train_sample_n)
    scst_baseline: Literal["greedy", "mean"] = "greedy"  # greedy caption's reward | mean of the other samples
    scst_temperature: float = 1.0  # sampling temperature
    reward_split: str = "train"  # split whose references give CIDEr-D's document frequencies
    decode_max_len: int = 20  # tokens decoded per caption, eos counted (self-critical's max_length 20)
    beam_size: int = 3  # evaluation / predict: beam width (1: greedy)
    length_penalty: float = 0.0  # beam search: GNMT alpha (0: raw log-likelihood, self-critical's default)
    no_repeat_trigram: bool = False  # beam search: forbid repeated trigrams (self-critical's block_trigrams)
    eval_meteor: bool = True  # score METEOR (a Java process; 10-30 s)
    eval_spice: bool = True  # score SPICE when its CoreNLP jars are present (never downloaded)
    server_alg: str = "clipvil"  # <alg> of the server's results name captions_<folder>_<alg>_results.json


class CaptionTask(TaskModule):
    """The captioner over cached grids; forward(batch) → XE or SCST loss, by phase."""

    primary_metric = "CIDEr"
    higher_is_better = True

    def __init__(self, cfg: CaptionConfig, ctx: RunContext) -> None:
        super().__init__()
        self.cfg, self.ctx = cfg, ctx
        check_key_template(cfg.feature_key, "task.feature_key")
        if cfg.seq_per_img < 1 or cfg.scst_samples < 1 or cfg.beam_size < 1 or cfg.decode_max_len < 1:
            raise ValueError("task.seq_per_img, scst_samples, beam_size and decode_max_len must be >= 1")
        if cfg.scst_baseline == "mean" and cfg.scst_samples < 2:
            raise ValueError("task.scst_baseline=mean (the other samples' mean reward) needs task.scst_samples >= 2")
        expect = {"encoder": cfg.feature_encoder, "preset": cfg.feature_preset, "layer": cfg.feature_layer}
        self.source = GridSource(cfg.features, cfg.extra_features, expect, cfg.preload_features, cfg.preload_max_gb)
        self._splits: dict[str, CaptionSplit] = {}
        self._datasets: dict[str, CaptionDataset] = {}
        self.vocab = self._vocabulary()
        self.model = build_model(cfg.model, cfg.preset, cfg.model_overrides, grid_dim=self.source.dim,
                                 vocab_size=len(self.vocab))
        self.reward: CaptionReward | None = None

    # ------------------------------------------------------------------ data
    def read(self, name: str) -> CaptionSplit:
        """One configured split (not joined)."""
        if name not in self._splits:
            cfg = self.cfg
            if name in cfg.coco_files:
                self._splits[name] = read_coco_split(cfg.coco_files[name], name, cfg.image_folders.get(name, ""))
            elif cfg.karpathy_file is not None and name in ("train", "val", "test"):
                self._splits[name] = read_karpathy_split(cfg.karpathy_file, name)
            else:
                known = sorted(set(cfg.coco_files) | ({"train", "val", "test"} if cfg.karpathy_file else set()))
                raise KeyError(f"caption task: unknown split {name!r}; configured: {known} (join with '+')")
        return self._splits[name]

    def _vocabulary(self) -> CaptionVocab:
        cfg, path = self.cfg, Path(self.ctx.out_dir) / VOCAB_FILE

        def make(p: Path) -> None:
            if cfg.vocab is not None:
                vocab = CaptionVocab.load(cfg.vocab)
            else:
                texts = (t for name in cfg.vocab_splits for part in name.split("+") for im in self.read(part).images
                         for t in im.tokens)
                vocab = CaptionVocab.build(texts, cfg.vocab_min_count, cfg.max_caption_words)
            atomic_write(p, vocab.save)

        self.ctx.prepare_once(path, make)
        vocab = CaptionVocab.load(path)
        if vocab.max_length != cfg.max_caption_words:
            raise ValueError(f"{path}: vocabulary of captions clipped to {vocab.max_length} words, the recipe asks "
                             f"for task.max_caption_words={cfg.max_caption_words}")
        return vocab

    def dataset(self, split: str) -> Dataset:
        parts = [self._dataset_part(name) for name in split.split("+")]
        return parts[0] if len(parts) == 1 else ConcatDataset(parts)

    def _dataset_part(self, name: str) -> CaptionDataset:
        if name not in self._datasets:
            data = self.read(name)
            keys = [feature_key(self.cfg.feature_key, im) for im in data.images]
            missing = self.source.missing(keys)
            if missing:
                raise KeyError(f"{self.cfg.features[0]}: no features for {len(missing)} image(s) of split {name!r} "
                               f"({data.source}), e.g. {missing[:3]}; extract them first")
            self._datasets[name] = CaptionDataset(data, keys, self.vocab)
        return self._datasets[name]

    def batch_sampler(self, split: str, dataset: Dataset, layout: BatchLayout) -> ResumableSampler:
        if self.cfg.length_bucket_width <= 0:
            return super().batch_sampler(split, dataset, layout)
        parts = [self._dataset_part(name) for name in split.split("+")]
        buckets = length_buckets([n for p in parts for n in p.lengths], self.cfg.length_bucket_width)
        return BucketBatchSampler(buckets, layout.batch_size, layout.grad_accum, layout.rank, layout.world_size,
                                  layout.seed, layout.shuffle)

    def collate(self, items: list[dict[str, Any]]) -> Batch:
        batch: Batch = {"grid": self.source.grids([it["key"] for it in items]),
                        "ids": [it["image_id"] for it in items], "refs": [it["refs"] for it in items]}
        if all(len(it["captions"]) for it in items):
            batch["captions"], batch["counts"] = caption_tensor(items, self.vocab.pad_id)  # [B, C, L], [B]
        return batch

    # ------------------------------------------------------------------ training
    def set_phase(self, phase: str) -> None:
        super().set_phase(phase)
        if phase in self.cfg.scst_phases and self.reward is None:
            self.reward = self._reward()

    def _reward(self) -> CaptionReward:
        """The CIDEr-D scorer of SCST, its df from the training references (cached in the run directory)."""
        corpus = [refs for name in self.cfg.reward_split.split("+") for refs in self._dataset_part(name).refs]
        fingerprint = corpus_fingerprint(self.vocab.words, corpus)
        path = Path(self.ctx.out_dir) / DF_FILE
        self.ctx.prepare_once(path, lambda p: CaptionReward.from_corpus(corpus).save(p, fingerprint))
        log.info("CIDEr-D document frequencies of %d %s images from %s", len(corpus), self.cfg.reward_split, path)
        return CaptionReward.load(path, fingerprint)

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        if self.phase in self.cfg.scst_phases:
            out = self.scst(batch)
            return out.loss, {"reward": out.rewards.mean(), "baseline": out.baseline.mean(),
                              "sample_len": float(out.samples.lengths.float().mean())}
        return self.xe(batch), {}

    def xe(self, batch: Batch) -> torch.Tensor:
        """Teacher-forced cross-entropy over seq_per_img captions of every image."""
        if "captions" not in batch:
            raise ValueError(f"caption task: XE needs reference captions; images {batch['ids'][:3]} have none")
        generator = torch.Generator().manual_seed(self.progress.step)  # the choice resumes with the run
        rows = select_captions(batch["captions"].cpu(), batch["counts"].cpu(), self.cfg.seq_per_img, generator)
        rows = rows.to(batch["captions"].device)  # [B*E, max_length + 2]
        width = int((rows != self.vocab.pad_id).sum(dim=1).max())  # bos .. eos of the longest row
        rows = rows[:, :width]  # [B*E, L+1]
        logprobs = self.model(batch["grid"], rows[:, :-1])  # [B*E, L, V]
        return xe_loss(logprobs, rows[:, 1:], self.vocab.pad_id)

    def scst(self, batch: Batch) -> ScstOutput:
        """One self-critical step's loss (and what went into it) for a batch of images."""
        if self.reward is None:
            self.reward = self._reward()
        grid, cfg, v = batch["grid"], self.cfg, self.vocab
        b, k = grid.batch_size, cfg.scst_samples
        greedy = None
        if cfg.scst_baseline == "greedy":
            was_training = self.model.training
            self.model.eval()
            with torch.no_grad():
                greedy = greedy_decode(self.model, self.model.encode(grid), b, bos=v.bos_id, eos=v.eos_id,
                                       max_len=cfg.decode_max_len, pad=v.pad_id)
            self.model.train(was_training)
        samples = sample_decode(self.model, self.model.encode(grid), b, n=k, temperature=cfg.scst_temperature,
                                bos=v.bos_id, eos=v.eos_id, max_len=cfg.decode_max_len, pad=v.pad_id)
        candidates = sentences(samples.tokens, samples.lengths)
        groups = np.repeat(np.arange(b), k)
        if greedy is not None:
            candidates += sentences(greedy.tokens, greedy.lengths)
            groups = np.concatenate([groups, np.arange(b)])
        scores = self.reward.score(candidates, batch["refs"], groups)
        rewards = scores[: b * k].reshape(b, k)
        baseline = scst_baseline(rewards, scores[b * k:] if greedy is not None else None)  # [B, k]
        advantage = torch.from_numpy((rewards - baseline).reshape(-1)).to(samples.logprobs.device)  # [B*k]
        loss = scst_loss(samples.logprobs, samples.mask, advantage)
        return ScstOutput(loss, samples, rewards, baseline, greedy)

    def artifacts(self) -> dict[str, Any]:
        v = self.vocab
        return {"caption_vocab": {"words": list(v.words), "max_length": v.max_length,
                                  "count_threshold": v.count_threshold},
                "features": self.source.provenance}

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, batches: Iterable[Batch], split: str, out_dir: Path | None) -> dict[str, Any]:
        preds: dict[int, str] = {}
        for batch in batches:
            out = decode_captions(self.model, batch["grid"], self.vocab, self.cfg, self.cfg.beam_size)
            for image_id, row in zip(batch["ids"], out.tokens.tolist()):
                preds[image_id] = self.vocab.decode(row)
        results = [{"image_id": i, "caption": c} for i, c in sorted(preds.items())]
        images = [im for name in split.split("+") for im in self.read(name).images]
        if out_dir is not None:
            atomic_write_json(out_dir / RESULTS_FILE, results)
        if not all(im.raw for im in images):
            if out_dir is not None:
                atomic_write_json(out_dir / self.server_results_name(split), results)
            return {"CIDEr": float("nan"), "n_images": len(preds)}
        refs = {im.image_id: list(im.raw) for im in images}
        scores = caption_scores(preds, refs, meteor=self.cfg.eval_meteor, spice=self.cfg.eval_spice)
        return {**scores, "n_images": len(preds)}

    def server_results_name(self, split: str) -> str:
        """captions_<folder>_<alg>_results.json, the COCO caption server's name (folder e.g. test2014)."""
        folders = {im.filepath for name in split.split("+") for im in self.read(name).images}
        folder = folders.pop() if len(folders) == 1 and "" not in folders else split
        return f"captions_{folder}_{self.cfg.server_alg}_results.json"


@dataclass
class ScstOutput:
    """What one SCST step computed (the loss and its parts, for logs and tests)."""

    loss: torch.Tensor  # scalar, differentiable
    samples: DecodeOutput  # B*k sampled captions, item-major, log-probs with grad
    rewards: np.ndarray  # [B, k] CIDEr-D of each sample
    baseline: np.ndarray  # [B, k] its baseline
    greedy: DecodeOutput | None  # the greedy captions (baseline "greedy")


def _make_task(cfg: CaptionConfig, ctx: RunContext) -> CaptionTask:
    return CaptionTask(cfg, ctx)


def _predictor(cfg: CaptionConfig, artifacts: dict[str, Any], device: torch.device) -> CaptionPredictor:
    return CaptionPredictor.from_artifacts(cfg, artifacts, device)


register_task("caption", CaptionConfig, _make_task, predictor=_predictor)

__all__ = ["CaptionConfig", "CaptionTask", "ScstOutput", "decode_captions"]
