"""The CLIP-ViL_p pre-training task: raw images + LXMERT-format sentences → MLM + ITM (stage 1), + QA (stage 2).

Data: LXMERT pre-training JSON files (``mscoco_train.json``, ``mscoco_nominival.json``, ``vgnococo.json``;
val ``mscoco_minival.json``) under `data_dir`, the answer table ``all_ans.json``, and the images under
`image_root` (COCO ids in their split folder, ``train2014/COCO_train2014_000000000042.jpg``; other ids — Visual
Genome — as ``<id>.jpg``). One item per sentence (captions and questions alike, as LXMERT flattens them).
Each item's image is decoded and padded in the Dataset (the `pretrain` preset: shorter side 384, longer ≤ 640,
zero-padded to 384×640 or 640×384); training batches come from one orientation bucket (one padded size).
WebDataset tar shards of image-caption pairs work as a split too (`shard_splits`): indexed once for random
access (`clipvil.families.clip.shards`), so the engine's resumable index samplers apply unchanged.

Objectives (losses summed, each logged on its own as loss_mlm / loss_itm / loss_qa):
- MLM: 15 % of the non-special tokens, 80 / 10 / 10 [MASK] / random / kept (`clipvil.families.vl.pretrain_data`);
  cross-entropy over the vocabulary at those positions, averaged over them;
- ITM: half of each batch's sentences swapped for another image's (exact share), 2-way cross-entropy;
- QA (stage 2, `objectives: [mlm, itm, qa]`): cross-entropy over the pre-training answer table, one answer
  drawn ∝ its score, questions paired with their own image only.
A batch's random draws (masks, partners, the 100-of-240 visual token sample) are a pure function of
(mask_seed, epoch, the batch's items), so a 2-process DDP run equals a 1-process run with accumulation.

The model is `VLModel` (`task.model`), visual tower trainable; the recipe gives the trunk its own SGD
(`extra_optimizers: {trunk: {modules: [visual], ...}}`) beside AdamW for the rest.
Evaluation: per-objective losses and accuracies on a held-out split (`pretrain_eval.json`); splits named in
`task.retrieval.splits` are image-text retrieval sets scored by ITM re-ranking of CLIP's zero-shot top-k
(`clipvil.families.vl.retrieval`; R@1/5/10 in `retrieval.json`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from clipvil.common.atomic import atomic_write_json
from clipvil.data.image_text import lxmert_image_path
from clipvil.data.lxmert import LxmertAnswerTable, load_lxmert_answer_table, read_lxmert
from clipvil.engine.registry import RunContext, register_task
from clipvil.engine.task import Batch, BatchLayout, ResumableSampler, TaskModule
from clipvil.families.clip.data import RetrievalSet, collate_pairs, embed_retrieval, read_pairs
from clipvil.families.clip.model import clip_transforms, create_clip, tokenizer
from clipvil.families.clip.shards import ShardPairs, read_shard_pairs
from clipvil.families.vl.build import VLModelConfig, build_vl, vl_config
from clipvil.families.vl.images import (
    ImageLoader,
    batch_rng,
    image_sizes,
    orientation_buckets,
    stack_images,
    tagged_sampler,
    untag,
)
from clipvil.families.vl.pretrain_data import IGNORE_INDEX, MaskingSpec, pretrain_targets
from clipvil.families.vl.retrieval import RerankConfig, image_blocks, itm_probabilities, rerank_recalls
from clipvil.families.vl.text import TextCodec

OBJECTIVES = ("mlm", "itm", "qa")


@dataclass
class VLPretrainConfig(VLModelConfig):
    """The vl_pretrain task's settings (YAML section `task`; model fields from VLModelConfig)."""

    data_dir: Path = Path("data/lxmert")  # folder of the LXMERT JSON files and all_ans.json
    image_root: Path = Path("data/images")  # COCO split folders (train2014/, val2014/) and VG images (<id>.jpg)
    splits: dict[str, list[str]] = field(default_factory=lambda: {
        "train": ["mscoco_train.json", "mscoco_nominival.json", "vgnococo.json"], "val": ["mscoco_minival.json"]})
    # split name → LXMERT files in data_dir (sentences of all of them, in order)
    shard_splits: dict[str, str] = field(default_factory=dict)  # split name → WebDataset shards (brace pattern,
    # e.g. "cc3m/{00000..00331}.tar"): image-caption pairs, no QA labels
    answer_table: Path | None = None  # all_ans.json (None: data_dir/all_ans.json)
    qa_sets: list[str] = field(default_factory=lambda: ["vqa", "gqa", "visual7w"])  # answers kept (LXMERT's qaSets)
    objectives: list[str] = field(default_factory=lambda: ["mlm", "itm"])  # stage 1; stage 2 adds "qa"
    loss_weights: dict[str, float] = field(default_factory=dict)  # objective → weight (default 1 each)
    mask_rate: float = 0.15  # MLM: share of non-special tokens predicted
    mismatch_rate: float = 0.5  # ITM: share of each batch shown with another image's sentence
    sample_tokens: bool = True  # draw VLConfig.visual_tokens (100) of the real cells per image (paper)
    mask_seed: int = 0  # seeds the per-batch draws (masks, ITM partners, visual token sample)
    eval_max_batches: int = 0  # evaluate on the first N batches of a split only (0: all)
    retrieval: RerankConfig | None = None  # image-text retrieval splits scored by ITM re-ranking of CLIP's top-k


class PretrainItems(Dataset):
    """One item per sentence: the decoded, padded image and the sentence's ids and QA label."""

    def __init__(self, sentences: list[Any], paths: list[Path], codec: TextCodec, loader: ImageLoader) -> None:
        self.sentences, self.paths, self.codec, self.loader = sentences, paths, codec, loader

    def __len__(self) -> int:
        return len(self.sentences)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, i = untag(key)
        s = self.sentences[i]
        pixels, hw = self.loader(self.paths[i])
        return {"epoch": epoch, "index": i, "uid": s.uid, "image_id": s.image_id, "pixels": pixels,
                "content_hw": hw, "ids": self.codec.encode(s.sentence), "label": s.labels}


class VLPretrainTask(TaskModule):
    """CLIP-ViL_p pre-training; forward(batch) → summed MLM / ITM / QA losses."""

    primary_metric = "loss"
    higher_is_better = False

    def __init__(self, cfg: VLPretrainConfig, ctx: RunContext) -> None:
        super().__init__()
        unknown = sorted(set(cfg.objectives) - set(OBJECTIVES)) + sorted(set(cfg.loss_weights) - set(OBJECTIVES))
        if unknown or not cfg.objectives:
            raise ValueError(f"task.objectives / loss_weights: unknown or no objective {unknown}; known: {OBJECTIVES}")
        self.cfg, self.ctx = cfg, ctx
        self.vcfg = vl_config(cfg)
        self._table: LxmertAnswerTable | None = None
        n_answers = len(self.table) if "qa" in cfg.objectives else 0
        model, self.codec = build_vl(cfg, n_answers=n_answers, pretrain_heads=True)
        self.model = model
        self.spec = self.codec.masking_spec(cfg.mask_rate)
        tower = self.model.visual
        self.loader = ImageLoader(cfg.image_size, tower.mean, tower.std)
        self._data: dict[str, tuple[list[Any], list[Any], list[tuple[int, int]] | None]] = {}
        self._retrieval_clip: list[Any] = []  # a plain list: the CLIP is no submodule (not trained, not saved)

    @property
    def table(self) -> LxmertAnswerTable:
        """The LXMERT answer table (read on first use: shard-only runs need none)."""
        if self._table is None:
            path = self.cfg.answer_table or Path(self.cfg.data_dir) / "all_ans.json"
            self._table = load_lxmert_answer_table(path, self.cfg.qa_sets)
        return self._table

    # ------------------------------------------------------------------------------------------- data
    def _read(self, split: str) -> tuple[list[Any], list[Any], list[tuple[int, int]] | None]:
        """(sentences, image sources, image sizes or None = read them from the files) of a split."""
        if split not in self._data:
            if split in self.cfg.shard_splits:
                pairs: ShardPairs = read_shard_pairs(self.cfg.shard_splits[split], Path(self.ctx.out_dir), self.ctx)
                self._data[split] = (pairs.sentences, pairs.paths, pairs.sizes)
            elif split in self.cfg.splits:
                files = [Path(self.cfg.data_dir) / f for f in self.cfg.splits[split]]
                data = read_lxmert(files, self.table)
                root = Path(self.cfg.image_root)
                paths = [lxmert_image_path(root, s.image_id) for s in data.sentences]
                self._data[split] = (data.sentences, paths, None)
            else:
                known = sorted(set(self.cfg.splits) | set(self.cfg.shard_splits))
                raise KeyError(f"vl_pretrain: unknown split {split!r}; configured: {known}")
        return self._data[split]

    def _is_retrieval(self, split: str) -> bool:
        return self.cfg.retrieval is not None and split in self.cfg.retrieval.splits

    def _clip(self) -> Any:
        """The CLIP proposing retrieval candidates (built on first use; not part of `self.model`)."""
        if not self._retrieval_clip:
            r, cfg = self.cfg.retrieval, self.cfg
            assert r is not None
            clip = create_clip(r.clip or cfg.encoder, r.clip_weights or cfg.encoder_weights).eval()
            clip.requires_grad_(False)
            self._retrieval_clip.append(clip)
        return self._retrieval_clip[0]

    def dataset(self, split: str) -> Dataset:
        if self._is_retrieval(split):
            r = self.cfg.retrieval
            assert r is not None
            clip = self._clip()
            name = r.clip or self.cfg.encoder
            return RetrievalSet(read_pairs(r.data, split, self.ctx), clip_transforms(clip, augment=False)[1],
                                tokenizer(name), r.data.captions_per_image, r.data.max_images)
        sentences, paths, _ = self._read(split)
        if not sentences:
            raise ValueError(f"vl_pretrain: split {split!r} has no sentences")
        return PretrainItems(sentences, paths, self.codec, self.loader)

    def batch_sampler(self, split: str, dataset: Dataset, layout: BatchLayout) -> ResumableSampler:
        """Landscape and portrait images in separate batches (one padded size per batch)."""
        _, paths, sizes = self._read(split)
        sizes = sizes if sizes is not None else image_sizes(paths, Path(self.ctx.out_dir), self.ctx)
        return tagged_sampler(orientation_buckets(sizes), layout)

    def collate(self, items: list[dict[str, Any]]) -> Batch:
        if "texts" in items[0]:  # a retrieval set's images and captions (CLIP inputs)
            return collate_pairs(items)
        rng = batch_rng(self.cfg.mask_seed, items)
        ids, att = self.codec.pad([it["ids"] for it in items])  # [B, T] x2
        image_ids = [it["image_id"] for it in items]
        labels = [it["label"] if "qa" in self.cfg.objectives else None for it in items]
        mismatch = self.cfg.mismatch_rate if "itm" in self.cfg.objectives and len(set(image_ids)) > 1 else 0.0
        spec = self.spec if "mlm" in self.cfg.objectives else _no_masking(self.spec)
        t = pretrain_targets(ids.numpy(), att.numpy(), image_ids, labels, spec, rng, mismatch)
        return {"pixels": stack_images([it["pixels"] for it in items]),  # [B, 3, H, W]
                "content_hw": [it["content_hw"] for it in items],
                "input_ids": torch.from_numpy(t.input_ids), "attention_mask": torch.from_numpy(t.attention_mask),
                "mlm_labels": torch.from_numpy(t.mlm_labels), "itm_labels": torch.from_numpy(t.itm_labels),
                "qa_labels": torch.from_numpy(t.qa_labels), "sample_seed": int(rng.integers(2**62)),
                "ids": [it["uid"] for it in items]}

    # ------------------------------------------------------------------------------------------- losses
    def _outputs(self, batch: Batch) -> tuple[Any, torch.Tensor]:
        labels = batch["mlm_labels"]  # [B, T]
        generator = torch.Generator().manual_seed(int(batch["sample_seed"]))
        n_visual = self.vcfg.visual_tokens if self.cfg.sample_tokens else None
        out = self.model.forward_pretrain(batch["pixels"], batch["content_hw"], batch["input_ids"],
                                          batch["attention_mask"], n_visual, generator, labels != IGNORE_INDEX)
        return out, labels[labels != IGNORE_INDEX]  # PretrainOutput, [M]

    def losses(self, batch: Batch) -> tuple[dict[str, torch.Tensor], Any, torch.Tensor]:
        """{objective: loss} of a batch (each a mean over its own targets; 0 without any), the outputs and the
        MLM targets."""
        out, mlm_targets = self._outputs(batch)
        found: dict[str, torch.Tensor] = {}
        found["mlm"] = _mean_ce(out.mlm.float(), mlm_targets)  # over the M masked positions
        found["itm"] = F.cross_entropy(out.itm.float(), batch["itm_labels"])
        if out.qa is not None:
            found["qa"] = _mean_ce(out.qa.float(), batch["qa_labels"])
        return found, out, mlm_targets

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        found, _, _ = self.losses(batch)
        total = torch.zeros((), device=batch["input_ids"].device)
        for name, value in found.items():
            weight = self.cfg.loss_weights.get(name, 1.0) if name in self.cfg.objectives else 0.0
            total = total + weight * value  # an inactive head gets weight 0: still in the graph (DDP)
        return total, {f"loss_{k}": float(v.detach()) for k, v in found.items() if k in self.cfg.objectives}

    # ------------------------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self, batches: Iterable[Batch], split: str, out_dir: Path | None) -> dict[str, Any]:
        if self._is_retrieval(split):
            return self._evaluate_retrieval(batches, split, out_dir)
        sums: dict[str, float] = {}
        for n, batch in enumerate(batches):
            if self.cfg.eval_max_batches and n >= self.cfg.eval_max_batches:
                break
            found, out, mlm_targets = self.losses(batch)
            counts = {"mlm": len(mlm_targets), "itm": len(batch["itm_labels"]),
                      "qa": int((batch["qa_labels"] != IGNORE_INDEX).sum())}
            right = {"mlm": int((out.mlm.argmax(-1) == mlm_targets).sum()),
                     "itm": int((out.itm.argmax(-1) == batch["itm_labels"]).sum())}
            if out.qa is not None:
                right["qa"] = int((out.qa.argmax(-1) == batch["qa_labels"]).sum())
            for name, value in found.items():
                if name in self.cfg.objectives:
                    _add(sums, f"{name}_loss", float(value) * counts[name])
                    _add(sums, f"{name}_n", counts[name])
                    _add(sums, f"{name}_right", right[name])
        metrics: dict[str, Any] = {}
        for name in self.cfg.objectives:
            n = sums.get(f"{name}_n", 0.0)
            metrics[f"{name}_loss"] = sums.get(f"{name}_loss", 0.0) / n if n else float("nan")
            metrics[f"{name}_accuracy"] = 100.0 * sums.get(f"{name}_right", 0.0) / n if n else float("nan")
            metrics[f"{name}_n"] = int(n)
        metrics["loss"] = sum(metrics[f"{k}_loss"] for k in self.cfg.objectives if metrics[f"{k}_n"])
        if out_dir is not None:
            atomic_write_json(Path(out_dir) / "pretrain_eval.json", {"split": split, **metrics})
        return metrics

    def _evaluate_retrieval(self, batches: Iterable[Batch], split: str, out_dir: Path | None) -> dict[str, Any]:
        r = self.cfg.retrieval
        assert r is not None
        clip = self._clip().to(next(self.model.parameters()).device)
        image_emb, text_emb, owner = embed_retrieval(clip, batches)
        rset = self.dataset(split)
        assert isinstance(rset, RetrievalSet)
        blocks = image_blocks(self.model, self.loader, [im.image for im in rset.images])
        text_ids = [self.codec.encode(c) for caps in rset.captions for c in caps]
        metrics = rerank_recalls(image_emb @ text_emb.T, owner, r.k, lambda pairs: itm_probabilities(
            self.model, blocks, text_ids, self.codec, pairs, r.batch_size))
        if out_dir is not None:
            atomic_write_json(Path(out_dir) / "retrieval.json", {"split": split, **metrics})
        return {**metrics, "loss": -metrics["rsum"]}  # primary metric: lower is better

    def artifacts(self) -> dict[str, Any]:
        return {"answers": list(self.table.answers) if "qa" in self.cfg.objectives else [],
                "text_tower": self.cfg.text_tower, "vocab_size": self.codec.vocab_size,
                "objectives": list(self.cfg.objectives), "encoder": self.cfg.encoder}


def _mean_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over the targets that are not IGNORE_INDEX; 0 (still in the graph) without any."""
    total = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (targets != IGNORE_INDEX).sum().clamp(min=1)


def _no_masking(spec: MaskingSpec) -> MaskingSpec:
    return dataclasses.replace(spec, rate=0.0)


def _add(sums: dict[str, float], key: str, value: float) -> None:
    sums[key] = sums.get(key, 0.0) + value


def _make_task(cfg: VLPretrainConfig, ctx: RunContext) -> VLPretrainTask:
    return VLPretrainTask(cfg, ctx)


register_task("vl_pretrain", VLPretrainConfig, _make_task)

__all__ = ["OBJECTIVES", "PretrainItems", "VLPretrainConfig", "VLPretrainTask"]
