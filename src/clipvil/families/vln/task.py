"""The VLN task (R2R, RxR): the EnvDrop follower or speaker over per-view CLIP features, no simulator.

Modes (`task.mode`):
- follower: forward(batch) runs EnvDrop's training rollouts over clipvil.data.nav_env.NavEnv inside one
  forward (so DDP sees one forward per micro-batch): feedback "sample" = ml_weight * IL (teacher-forced
  rollout) + A2C (sampled rollout), clipvil.families.vln.rollout.envdrop_loss; "teacher" = IL only.
  Per-step feature dropout (feat_dropout) on the visual channels of the real batches.
- follower + back-translation (`aug_file` and `speaker_checkpoint` set): every update is a real micro-batch
  and an augmented one (AlternatingBatchSampler; train.grad_accum 2 = EnvDrop's --accumulateGrad). On an
  augmented batch (sampled shortest paths of the training scans) the frozen speaker (loaded from its run's
  checkpoint) greedily writes the instructions under one environmental-dropout mask, the same mask then
  drops the follower's view features for the whole episode, and the loss weighs IL by aug_ml_weight (0.6).
  The follower itself starts from the follower run (train.init_from), as EnvDrop's --load.
- speaker: teacher-forced cross-entropy of the instruction tokens given the shortest path (EnvDrop's speaker
  training); evaluation decodes greedily (clipvil.nn.decoding) and reports BLEU-4 (primary).

Evaluation (every split of train.eval_splits, e.g. val_seen and val_unseen in one run): greedy (argmax)
rollouts without dropout, the R2R submission file `submission.json`, metrics of clipvil.metrics.nav (sr,
spl, ne, tl, osr, ndtw, sdtw, cls). The primary metric is the success rate `sr`: EnvDrop (and CLIP-ViL's
run scripts) keep the model with the best val_unseen success rate (`best_val_unseen`), so recipes set
train.best_split: val_unseen. The tokenizer (EnvDrop word vocabulary for R2R; a subword vocabulary trained on
the training instructions for RxR) is written once to the run folder and saved in every checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from clipvil.common.atomic import atomic_write_json
from clipvil.data.nav import NavInstruction, load_nav_graphs, read_r2r, shortest_distances
from clipvil.data.nav_env import NavEnv
from clipvil.data.nav_text import (
    EnvDropTokenizer,
    SubwordTokenizer,
    build_envdrop_vocab,
    tokenizer_from_artifact,
)
from clipvil.engine.models import build_model
from clipvil.engine.registry import RunContext, register_task
from clipvil.engine.task import Batch, BatchLayout, ResumableSampler, TaskModule
from clipvil.families.vln.data import (
    AlternatingBatchSampler,
    JoinedDataset,
    NavDataset,
    pad_tokens,
    read_split,
    split_file,
    tokenised,
)
from clipvil.families.vln.eval import (
    decode_instructions,
    follower_trajectories,
    navigation_metrics,
    speaker_loss,
    speaker_metrics,
    write_submission,
)
from clipvil.families.vln.features import ViewFeatures
from clipvil.families.vln.rollout import RolloutConfig, envdrop_loss, rollout

log = logging.getLogger(__name__)
TOKENIZER_FILE = "instruction_tokenizer.json"


@dataclass
class VLNConfig:
    """The VLN task's settings (YAML section `task`)."""

    mode: Literal["follower", "speaker"] = "follower"  # train the navigation agent or the speaker
    dataset: Literal["r2r", "rxr"] = "r2r"  # instruction file format (R2R JSON / RxR guide JSONL)
    data_dir: Path = Path("data/r2r")  # folder of R2R_<split>.json or rxr_<split>_guide.jsonl[.gz]
    split_files: dict[str, str] = field(default_factory=dict)  # split name → file in data_dir (other names)
    language: str = ""  # RxR: keep this language only ("en", "hi", "te" or a full tag like "en-IN")
    connectivity: Path = Path("data/connectivity")  # <scan>_connectivity.json[.gz] (+ scans.txt)
    features: Path = Path("runs/features/views")  # store of `clipvil import-views` or `extract --preset views`
    feature_encoder: str = ""  # when set, the store must hold features of this encoder
    allow_float16_features: bool = False  # accept a float16 store (CLIP-ViL's fp16 features did not match)
    preload_features: bool | None = None  # read every viewpoint into memory (None: when it fits)
    preload_max_gb: float = 8.0  # the size rule of preload_features: None
    tokenizer: Literal["envdrop", "subword"] = "envdrop"  # EnvDrop word vocabulary | trained WordPiece
    vocab: Path | None = None  # envdrop: the vocabulary file (train_vocab.txt); None: built from train
    vocab_min_count: int = 5  # envdrop vocabulary built from train: words seen at least this often
    subword_vocab_size: int = 4000  # subword: vocabulary size of the WordPiece trainer
    vocab_split: str = "train"  # split whose instructions build the vocabulary
    max_input: int = 80  # instruction ids incl. <BOS>/<EOS> (--maxInput: 80 R2R, 160 RxR)
    max_action: int = 35  # steps per episode (--maxAction)
    record_turns: bool = True  # turns in place are trajectory steps (EnvDrop R2R); False: moves only (RxR)
    merge_repeats: bool = True  # DTW metrics merge consecutive repeats (False: CLIP-ViL's RxR evaluation)
    model_preset: str = "envdrop"  # envdrop_follower / envdrop_speaker preset (envdrop | tiny)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # fields of the model config to change
    feedback: Literal["sample", "teacher"] = "sample"  # follower: IL + A2C (sample) or IL only (teacher)
    ml_weight: float = 0.2  # IL weight beside A2C (--mlWeight: 0.2 R2R, 0.4 RxR)
    teacher_weight: float = 1.0  # IL weight with feedback teacher (--teacherWeight)
    gamma: float = 0.9  # A2C discount
    entropy_weight: float = 0.01  # A2C entropy bonus
    normalize: Literal["total", "batch", "none"] = "total"  # A2C loss normalisation (--normalize)
    aug_file: Path | None = None  # back-translation: augmented paths (R2R format; instructions unused)
    speaker_checkpoint: Path | None = None  # back-translation: a speaker run's checkpoint (last.pt / best.pt)
    aug_split: str = "train"  # the split the augmented paths join (train.train_split)
    aug_ml_weight: float = 0.6  # IL weight on augmented batches (EnvDrop's back-translation setting)
    env_drop_shared: bool = True  # one environmental-dropout mask per batch (EnvDrop) instead of per episode
    max_decode: int = 120  # speaker decoding length (--maxDecode)
    primary_metric: Literal["sr", "spl", "ndtw", "sdtw", "cls"] = "sr"  # follower: the metric picking best.pt
    # (EnvDrop / CLIP-ViL R2R: success rate; CLIP-ViL's RxR also keeps a best nDTW model)


class VLNTask(TaskModule):
    """EnvDrop follower or speaker on a NavEnv (see the module docstring)."""

    primary_metric = "sr"
    higher_is_better = True

    def __init__(self, cfg: VLNConfig, ctx: RunContext) -> None:
        super().__init__()
        self.cfg, self.ctx = cfg, ctx
        self._splits: dict[str, list[NavInstruction]] = {}
        expect = {"encoder": cfg.feature_encoder}
        self.views = ViewFeatures(cfg.features, expect, preload=cfg.preload_features,
                                  preload_max_gb=cfg.preload_max_gb, allow_float16=cfg.allow_float16_features)
        self.tok = self._tokenizer()
        kind = "envdrop_speaker" if cfg.mode == "speaker" else "envdrop_follower"
        self.model = build_model(kind, cfg.model_preset, cfg.model_overrides, vocab_size=self.tok.vocab_size,
                                 feature_dim=self.views.dim, padding_idx=self.tok.pad_id)
        self.graphs: dict[str, Any] = {}
        self.env = NavEnv(self.graphs, self.views, max_action=cfg.max_action, angle_dim=self.model.cfg.angle_dim,
                          record_turns=cfg.record_turns)
        self.primary_metric = "bleu" if cfg.mode == "speaker" else cfg.primary_metric
        self.rollout_cfg = RolloutConfig(ml_weight=cfg.ml_weight, teacher_weight=cfg.teacher_weight,
                                         gamma=cfg.gamma, entropy_weight=cfg.entropy_weight, normalize=cfg.normalize)
        self.speaker = self._back_translation_speaker()

    # -- vocabulary, graphs, speaker --

    def _tokenizer(self) -> EnvDropTokenizer | SubwordTokenizer:
        path = Path(self.ctx.out_dir) / TOKENIZER_FILE
        self.ctx.prepare_once(path, lambda p: atomic_write_json(p, self._build_tokenizer().to_artifact()))
        return tokenizer_from_artifact(json.loads(path.read_text(encoding="utf-8")))

    def _build_tokenizer(self) -> EnvDropTokenizer | SubwordTokenizer:
        cfg = self.cfg
        if cfg.tokenizer == "envdrop":
            if cfg.vocab is not None:
                return EnvDropTokenizer.from_file(cfg.vocab, cfg.max_input)
            texts = (ep.instruction for ep in self._read(cfg.vocab_split))
            return EnvDropTokenizer(build_envdrop_vocab(texts, cfg.vocab_min_count), cfg.max_input)
        texts = [ep.instruction for ep in self._read(cfg.vocab_split)]
        return SubwordTokenizer.train(texts, cfg.subword_vocab_size, max_length=cfg.max_input)

    def _read(self, name: str) -> list[NavInstruction]:
        if name not in self._splits:
            path = split_file(Path(self.cfg.data_dir), self.cfg.dataset, name, self.cfg.split_files)
            self._splits[name] = read_split(path, self.cfg.dataset, self.cfg.language)
        return self._splits[name]

    def _load_graphs(self, episodes: Iterable[NavInstruction], source: str) -> None:
        episodes = list(episodes)
        scans = sorted({ep.scan for ep in episodes} - set(self.graphs))
        if scans:
            self.graphs.update(load_nav_graphs(self.cfg.connectivity, scans))
        for ep in episodes:
            for vp in ep.path:
                if vp not in self.graphs[ep.scan]:
                    raise ValueError(f"{source}: instruction {ep.instr_id}: viewpoint {vp} is not in the graph of "
                                     f"scan {ep.scan}")
        needed = {(ep.scan, vp) for ep in episodes for vp in self.graphs[ep.scan].nodes}
        missing = self.views.missing(needed)
        if missing:
            raise KeyError(f"{self.cfg.features}: no view features for {len(missing)} viewpoint(s) of {source}, "
                           f"e.g. {missing[:3]}; import or extract them first")

    def _back_translation_speaker(self) -> torch.nn.Module | None:
        cfg = self.cfg
        if (cfg.aug_file is None) != (cfg.speaker_checkpoint is None):
            raise ValueError("back-translation needs both task.aug_file and task.speaker_checkpoint")
        if cfg.aug_file is None or cfg.mode != "follower":
            return None
        path = Path(cfg.speaker_checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"task.speaker_checkpoint {path}: no such checkpoint")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if "model" not in state or state.get("artifacts", {}).get("mode") != "speaker":
            raise ValueError(f"task.speaker_checkpoint {path}: not a checkpoint of a VLN speaker run")
        saved = state.get("artifacts", {}).get("tokenizer")
        if saved != self.tok.to_artifact():
            raise ValueError(f"{path}: the speaker was trained with another instruction "
                             "tokenizer than this run's (vocabulary and max_input must match)")
        speaker_cfg = state.get("config", {}).get("task", {})
        speaker = build_model("envdrop_speaker", speaker_cfg.get("model_preset", cfg.model_preset),
                              speaker_cfg.get("model_overrides", {}), vocab_size=self.tok.vocab_size,
                              feature_dim=self.views.dim, padding_idx=self.tok.pad_id)
        speaker.load_state_dict(state["model"])
        speaker.requires_grad_(False)
        return speaker.eval()

    def train(self, mode: bool = True) -> VLNTask:
        super().train(mode)
        if self.speaker is not None:
            self.speaker.eval()  # the back-translation speaker always decodes without dropout
        return self

    # -- data --

    def dataset(self, split: str) -> Dataset:
        episodes = self._read(split)
        self._load_graphs(episodes, f"split {split}")
        data = tokenised(episodes, self.tok)
        if split == self.cfg.aug_split and self.cfg.aug_file is not None and self.cfg.mode == "follower":
            aug = read_r2r(self.cfg.aug_file)
            self._load_graphs(aug, str(self.cfg.aug_file))
            return JoinedDataset(data, NavDataset(aug, [None] * len(aug), augmented=True))
        return data

    def batch_sampler(self, split: str, dataset: Dataset, layout: BatchLayout) -> ResumableSampler:
        if isinstance(dataset, JoinedDataset):
            return AlternatingBatchSampler(len(dataset.real), len(dataset.aug), layout)
        return super().batch_sampler(split, dataset, layout)

    def collate(self, items: list[dict[str, Any]]) -> Batch:
        augmented = {bool(it["augmented"]) for it in items}
        if len(augmented) != 1:
            raise ValueError("VLN batch mixes real and augmented items (use the task's batch sampler)")
        batch: Batch = {"episodes": [it["episode"] for it in items], "ids": [it["episode"].instr_id for it in items],
                        "augmented": augmented.pop()}
        if not batch["augmented"]:
            batch["tokens"], batch["token_mask"] = pad_tokens([it["tokens"] for it in items], self.tok.pad_id)
        return batch

    # -- training --

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        if self.cfg.mode == "speaker":
            return speaker_loss(self.model, self.env, batch, self.tok.pad_id)
        if batch["augmented"]:
            return self._augmented_loss(batch)
        return self._follower_loss(batch, self.rollout_cfg, None)

    def _follower_loss(self, batch: Batch, config: RolloutConfig, env_drop: torch.Tensor | None
                       ) -> tuple[torch.Tensor, dict[str, float]]:
        if self.cfg.feedback == "teacher":
            result = rollout(self.model, self.env, batch, "teacher", config=config, env_drop=env_drop)
            return config.teacher_weight * result.il_loss, {f"teacher/{k}": v for k, v in result.logs.items()}
        return envdrop_loss(self.model, self.env, batch, config=config, env_drop=env_drop)

    def _augmented_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        assert self.speaker is not None
        device = next(self.model.parameters()).device
        episodes = batch["episodes"]
        mask = self.model.env_drop_mask(len(episodes), shared=self.cfg.env_drop_shared, device=device)  # [B, D]
        with torch.no_grad():
            tokens = decode_instructions(self.speaker, self.env, episodes, self.tok, self.cfg.max_decode, device,
                                         env_drop=mask)  # [B, T]
        aug = {"episodes": episodes, "tokens": tokens, "token_mask": tokens != self.tok.pad_id}
        config = dataclasses.replace(self.rollout_cfg, ml_weight=self.cfg.aug_ml_weight)
        loss, logs = self._follower_loss(aug, config, mask)
        return loss, {f"aug/{k}": v for k, v in logs.items()}

    # -- evaluation --

    def artifacts(self) -> dict[str, Any]:
        return {"tokenizer": self.tok.to_artifact(), "features": self.views.provenance, "mode": self.cfg.mode,
                "dataset": self.cfg.dataset}

    @torch.no_grad()
    def evaluate(self, batches: Iterable[Batch], split: str, out_dir: Path | None) -> dict[str, Any]:
        episodes = self._read(split)
        self._load_graphs(episodes, f"split {split}")
        if self.cfg.mode == "speaker":
            refs: dict[int, list[str]] = {}
            for ep in episodes:
                refs.setdefault(ep.path_id, []).append(ep.instruction)
            return speaker_metrics(self.model, self.env, batches, self.tok, refs, self.cfg.max_decode, out_dir)
        trajectories = follower_trajectories(self.model, self.env, batches)
        if out_dir is not None:
            write_submission(trajectories, out_dir)
        scored = [ep for ep in episodes if ep.instr_id in trajectories]
        if any(len(ep.path) < 2 for ep in scored):  # R2R test: only the start is known
            return {"sr": float("nan"), "n": float(len(trajectories))}
        distances = {scan: self._distances(scan) for scan in {ep.scan for ep in scored}}
        return navigation_metrics(trajectories, scored, distances, self.cfg.merge_repeats)

    def _distances(self, scan: str) -> dict[str, dict[str, float]]:
        cache = self.__dict__.setdefault("_distance_cache", {})
        if scan not in cache:
            cache[scan] = shortest_distances(self.graphs[scan])
        return cache[scan]


def _make_task(cfg: VLNConfig, ctx: RunContext) -> VLNTask:
    return VLNTask(cfg, ctx)


register_task("vln", VLNConfig, _make_task)
