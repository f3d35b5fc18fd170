"""`clipvil card` for the CLIP-ViL_p recipes (tasks "vl_pretrain", configs/pretrain/, and "vl_finetune",
configs/finetune/): the CLIP tower trained end to end from images, so it is counted with the transformer.

The model is the task's (`clipvil.families.vl.build.build_vl` without its weight loading): the recipe's CLIP tower
(`task.encoder`, trainable; the parameters its grid never reaches — a ResNet's attention pool — frozen, as the
task does) + the single-stream BERT over [text ; grid tokens] + the heads. BERT's sizes come from
`task.bert_dir`/config.json when it is here, otherwise from bert-base-uncased's configuration (transformers'
`BertConfig` defaults: 30,522 x 768, 12 layers of 12 heads, 3,072 wide), the model the recipes name; nothing is
downloaded. Built on the meta device, then materialised.

A training sample is one image (NLVR2: two) at the recipe's padded size — `task.image_size` (short, long):
landscape short x long (the portrait bucket, long x short, costs the same) — and one sentence at the text cap
(`max_text_tokens`; a batch is padded to its longest sentence). Pre-training samples `visual_tokens` of the
grid's cells per image (sample_tokens) and weighs MLM (15 % of the non-special tokens), ITM and QA (stage 2)
as the recipe says; fine-tuning uses every cell, with the head of its dataset (VQA / GQA: BCE over the
answers; SNLI-VE: 3 classes; NLVR2: the pair model, 2 classes, both images in one sequence).

The recipes train the tower with SGD and the rest with AdamW (`extra_optimizers`): `facts["optimizer_groups"]`
gives each group's parameters and the fp32 states its optimizer keeps per parameter.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig

from clipvil.apps.card_parts import (
    CardOptions,
    CardParts,
    CardPhase,
    materialise,
    no_random_weights_warning,
    register_card,
)
from clipvil.data.lxmert import load_lxmert_answer_table
from clipvil.data.tokenizers import default_bert_dir
from clipvil.encoders import build_encoder, tower_family
from clipvil.engine.config import OptimConfig, RunConfig
from clipvil.engine.optim import MAIN, partition_parameters
from clipvil.families.vl.build import freeze_unused, vl_config
from clipvil.families.vl.finetune_data import fixed_labels
from clipvil.families.vl.pair import VLPairModel
from clipvil.families.vl.transformer import VLModel, bert_config_from
from clipvil.nn.losses import vqa_bce

# LXMERT's pre-training corpus (Tan & Bansal, EMNLP 2019, Table 1 / section 3.3): its training files
LXMERT_TRAIN_FILES = frozenset({"mscoco_train.json", "mscoco_nominival.json", "vgnococo.json"})
LXMERT_SENTENCES = 9_180_000  # "9.18M image-and-sentence pairs" (captions and questions), minival held out
LXMERT_IMAGES = 180_000  # "on 180K distinct images" (COCO + Visual Genome)
LXMERT_SOURCE = ("LXMERT (Tan & Bansal, EMNLP 2019): 9.18M image-sentence pairs over 180K COCO and Visual Genome "
                 "images (the paper's rounded corpus size)")
LXMERT_ANSWERS = 9_500  # all_ans.json filtered to vqa, gqa, visual7w (checked on shared/data/clip-vil)

# fine-tuning sets: dataset -> ((a file-name part, {unit: count}), ...), and the source of the counts
FINETUNE_SIZES: dict[str, tuple[tuple[str, dict[str, int]], ...]] = {
    "vqa": (("test-dev2015", {"questions": 107_394, "images": 36_807}),
            ("train2014", {"questions": 443_757, "images": 82_783}),
            ("val2014", {"questions": 214_354, "images": 40_504}),
            ("test2015", {"questions": 447_793, "images": 81_434})),
    "gqa": (("train_balanced", {"questions": 943_000}), ("testdev_balanced", {"questions": 12_578})),
    "snli_ve": (("snli_ve_train", {"pairs": 529_527}), ("snli_ve_dev", {"pairs": 17_858}),
                ("snli_ve_test", {"pairs": 17_901})),
    "nlvr2": (("train.json", {"examples": 86_373}), ("dev.json", {"examples": 6_982}),
              ("test1.json", {"examples": 6_967})),
}
FINETUNE_SOURCES = {
    "vqa": "VQA v2 (Goyal et al., CVPR 2017), visualqa.org/download.html",
    "gqa": "GQA balanced (Hudson & Manning, CVPR 2019), cs.stanford.edu/people/dorarad/gqa",
    "snli_ve": "SNLI-VE (Xie et al., 2019), github.com/necla-ml/SNLI-VE",
    "nlvr2": "NLVR2 (Suhr et al., ACL 2019), lil-lab/nlvr (dev.json: 6,982 lines, as ../shared/data/nlvr2)",
}
ANSWERS_ASSUMED = {"vqa": 3129, "gqa": 1842}  # the released answer tables (CLIP-ViL / LXMERT), when not read
_OPT_STATES = {"adamw": 2, "adam": 2, "adamax": 2}


@dataclass(frozen=True)
class SampleShape:
    """One training sample as the card measures it."""

    image_hw: tuple[int, int]  # padded (H, W) of each image (landscape)
    images: int  # images per sample (NLVR2: 2)
    grid_hw: tuple[int, int]  # the tower's grid at image_hw
    text_tokens: int  # ids of the sentence (the cap)
    visual_tokens: int  # visual tokens per image after any sampling
    mlm_positions: int  # MLM targets per sample (0 without MLM)


def _quiet_build(name: str, trainable: bool) -> nn.Module:
    """The tower on the meta device, without the "random weights" warning (the card needs no weights)."""
    with no_random_weights_warning(), torch.device("meta"):
        return build_encoder(name, None, trainable=trainable)


def bert_config(task: Any, layers: int) -> tuple[BertConfig, str]:
    """(BertConfig, how) of the recipe's text transformer (see the module docstring)."""
    if task.text_tower != "bert":
        raise ValueError(f"card: text_tower {task.text_tower!r} (CLIP-ViL+) has no card yet; cards cover 'bert'")
    directory = task.bert_dir
    if directory is None:
        try:
            directory = default_bert_dir()
        except FileNotFoundError:
            directory = None
    if directory is not None and (Path(directory) / "config.json").is_file():
        return bert_config_from(directory, layers), f"BERT sizes from {Path(directory) / 'config.json'}"
    config = BertConfig()  # bert-base-uncased
    if layers:
        config.num_hidden_layers = layers
    return config, (f"BERT sizes of bert-base-uncased ({config.vocab_size:,} x {config.hidden_size}, "
                    f"{config.num_hidden_layers} layers; {directory} is not here, nothing is downloaded)")


def _grid_hw(tower: nn.Module, name: str, hw: tuple[int, int]) -> tuple[int, int]:
    if tower_family(name) == "clip-vit":  # patch conv, kernel = stride
        return hw[0] // tower.stride, hw[1] // tower.stride
    with torch.no_grad():
        return tuple(tower(torch.empty(1, 3, *hw, device="meta")).hw)  # type: ignore[return-value]


def build_card_model(task: Any, n_answers: int, pretrain_heads: bool, pair: bool
                     ) -> tuple[nn.Module, tuple[int, int], list[str]]:
    """(the materialised model, grid hw at the recipe's image size, notes) of a CLIP-ViL_p recipe."""
    vcfg = vl_config(task)
    config, how = bert_config(task, vcfg.layers)
    hw = (int(task.image_size[0]), int(task.image_size[1]))
    tower = _quiet_build(task.encoder, task.visual_trainable)
    grid = _grid_hw(tower, task.encoder, hw)
    with torch.device("meta"):
        model = VLModel(vcfg, config, tower, n_answers=n_answers, pretrain_heads=pretrain_heads)
    model = materialise(model)
    if model.mlm is not None:  # to_empty made the tied decoder a tensor of its own: tie it again
        model.mlm.decoder.weight = model.transformer.bert.embeddings.word_embeddings.weight
    notes = [how]
    if task.visual_trainable and task.freeze_unused_visual:
        frozen = freeze_unused(model.visual)
        notes.append(f"tower parameters the grid never reaches frozen, as the task does ({len(frozen)} tensors: "
                     f"{', '.join(frozen[:2])}{' ...' if len(frozen) > 2 else ''})")
    out: nn.Module = VLPairModel(model) if pair else model
    return out, grid, notes


def _images(model: nn.Module, shape: SampleShape, batch: int) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    dev = next(model.parameters()).device
    h, w = shape.image_hw
    size = (batch, 2, 3, h, w) if shape.images == 2 else (batch, 3, h, w)
    return torch.randn(*size, device=dev), [(h, w)] * (batch * shape.images)  # pixels, content_hw


def _text(model: nn.Module, shape: SampleShape, batch: int, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    dev = next(model.parameters()).device
    ids = torch.randint(1, vocab, (batch, shape.text_tokens), device=dev)  # [B, T] no padding
    return ids, torch.ones_like(ids)  # [B, T], attention mask [B, T]


def pretrain_loss(model: VLModel, batch: int, shape: SampleShape, weights: dict[str, float], vocab: int,
                  n_visual: int | None) -> torch.Tensor:
    """The vl_pretrain task's weighted MLM + ITM (+ QA) loss over a random batch (`VLPretrainTask.forward`)."""
    pixels, content_hw = _images(model, shape, batch)
    ids, att = _text(model, shape, batch, vocab)
    mlm_mask = torch.zeros_like(ids, dtype=torch.bool)  # [B, T]
    mlm_mask[:, 1:1 + shape.mlm_positions] = True
    out = model.forward_pretrain(pixels, content_hw, ids, att, n_visual, None, mlm_mask)
    dev = ids.device
    mlm_target = torch.randint(0, vocab, (int(mlm_mask.sum()),), device=dev)  # [M]
    total = (F.cross_entropy(out.mlm.float(), mlm_target, reduction="sum") / max(len(mlm_target), 1)
             * weights["mlm"])
    total = total + weights["itm"] * F.cross_entropy(out.itm.float(), torch.randint(0, 2, (batch,), device=dev))
    if out.qa is not None:
        qa_target = torch.randint(0, out.qa.shape[1], (batch,), device=dev)  # [B]
        total = total + weights["qa"] * F.cross_entropy(out.qa.float(), qa_target)
    return total


def finetune_loss(model: nn.Module, batch: int, shape: SampleShape, vocab: int, dataset: str) -> torch.Tensor:
    """The vl_finetune task's loss over a random batch (`VLFinetuneTask.forward`)."""
    pixels, content_hw = _images(model, shape, batch)
    ids, att = _text(model, shape, batch, vocab)
    logits = model(pixels, content_hw, ids, att).float()  # [B, n]
    if fixed_labels(dataset) is None:  # VQA / GQA: soft scores, a few answers per question
        target = (torch.rand(logits.shape, device=logits.device) < 3 / logits.shape[1]).float()  # [B, A]
        return vqa_bce(logits, target)
    return F.cross_entropy(logits, torch.randint(0, logits.shape[1], (batch,), device=logits.device))


# --------------------------------------------------------------------------------------- facts


def _answers_pretrain(task: Any) -> tuple[int, str]:
    path = Path(task.answer_table) if task.answer_table else Path(task.data_dir) / "all_ans.json"
    if path.is_file():
        n = len(load_lxmert_answer_table(path, task.qa_sets))
        return n, f"QA head of {n:,} answers: {path} filtered to {task.qa_sets}"
    return LXMERT_ANSWERS, (f"QA head of {LXMERT_ANSWERS:,} answers: LXMERT's all_ans.json filtered to vqa, gqa, "
                            f"visual7w ({path} is not here)")


def _answers_finetune(task: Any) -> tuple[int, str]:
    labels = fixed_labels(task.dataset)
    if labels is not None:
        return len(labels), f"{len(labels)} classes ({', '.join(labels)})"
    if task.answer_vocab is not None and (Path(task.answer_vocab) / "trainval_label2ans.json").is_file():
        path = Path(task.answer_vocab) / "trainval_label2ans.json"
        n = len(json.loads(path.read_text()))
        return n, f"{n:,} answers: the size of {path}"
    n = ANSWERS_ASSUMED.get(task.dataset, 3129)
    return n, f"{n:,} answers assumed (the answer vocabulary is built from the data, or its file is not here)"


def optimizer_groups(model: nn.Module, cfg: RunConfig) -> dict[str, dict[str, Any]]:
    """{optimizer name: {optim, params, states}} of the engine's partition ('main' = the `optim` section;
    states = fp32 tensors its optimizer keeps per parameter: AdamW 2, SGD 1 with momentum, else 0)."""
    out: dict[str, dict[str, Any]] = {}
    for name, params in partition_parameters(model, cfg).items():
        optim: OptimConfig = cfg.optim if name == MAIN else cfg.extra_optimizers[name].optim
        states = _OPT_STATES.get(optim.name, 1 if optim.momentum else 0)
        if optim.name == "rmsprop":
            states = 1 + (1 if optim.momentum else 0)
        out[name] = {"optim": optim.name, "params": sum(p.numel() for p in params), "states": states}
    return out


def synthetic_world(data_dir: str | Path) -> bool:
    """True for data under a `runs/` folder or a synthetic world (manifest.json here or above): files named as
    the official ones (`clipvil make-data` writes them so) whose sizes are not the official sizes."""
    path = Path(data_dir)
    return "runs" in path.parts or any((d / "manifest.json").is_file() for d in (path, *path.parents[:3]))


def _split_sizes(dataset: str, files: Sequence[str], synthetic: bool) -> dict[str, Any]:
    names = [Path(f).name for f in files]
    if synthetic:
        return {"files": names, "note": "a synthetic world: size not known to the card"}
    for part, counts in FINETUNE_SIZES.get(dataset, ()):
        if any(part in n for n in names):
            return {"files": names, **counts}
    return {"files": names, "note": "size not known to the card"}


def _parts(cfg: RunConfig, model: nn.Module, phase: CardPhase, shape: SampleShape, facts: dict[str, Any],
           datasets: dict[str, Any], train_n: int | None, notes: list[str]) -> CardParts:
    t = cfg.task
    frozen = 0 if t.visual_trainable else sum(p.numel() for p in model.visual.parameters())  # type: ignore[union-attr]
    h, w = shape.image_hw
    facts.update(encoder=t.encoder, image_hw=shape.image_hw, images_per_sample=shape.images, grid_hw=shape.grid_hw,
                 grid_dim=int(model.visual.dim), text_tokens=shape.text_tokens,  # type: ignore[union-attr]
                 visual_tokens=shape.visual_tokens, sequence=shape.text_tokens + shape.images * shape.visual_tokens,
                 tower_trained=bool(t.visual_trainable), optimizer_groups=optimizer_groups(model, cfg),
                 input=f"{shape.images} x {h}x{w} RGB image(s), float32 normalised pixels")
    notes.extend([
        (f"images of {h}x{w} (task.image_size {list(t.image_size)}: the landscape bucket; portrait images are "
        f"padded to {w}x{h}, the same cost) -> {shape.grid_hw[0]}x{shape.grid_hw[1]} grid cells"),
        (f"sentences of {shape.text_tokens} ids (max_text_tokens: a batch is padded to its longest sentence; assumed "
        "at the cap)"),
        "the tower is " + ("trained end to end: counted (forward + backward)" if t.visual_trainable else
                           "frozen but fed images: its forward counted, its parameters as frozen"),
        "optimizer states per group: " + "; ".join(f"{k}: {v['optim']} over {v['params']:,} parameters, {v['states']} "
                                                   "state(s) each" for k, v in facts["optimizer_groups"].items()),
    ])
    return CardParts(model=model, phases=[phase], facts=facts, datasets=datasets, train_samples=train_n,
                     input_bytes=shape.images * 3 * h * w * 4, notes=notes, embedding_params=0, frozen_params=frozen)


def describe_vl_pretrain(cfg: RunConfig, opts: CardOptions) -> CardParts:
    """The card parts of a CLIP-ViL_p pre-training recipe (stage 1: MLM + ITM; stage 2: + QA)."""
    t = cfg.task
    notes: list[str] = []
    n_answers, how = _answers_pretrain(t) if "qa" in t.objectives else (0, "")
    model, grid, build_notes = build_card_model(t, n_answers, pretrain_heads=True, pair=False)
    notes += build_notes + ([how] if how else [])
    vocab = int(model.transformer.bert.config.vocab_size)  # type: ignore[union-attr]
    cells = grid[0] * grid[1]
    n_visual = model.cfg.visual_tokens if t.sample_tokens else None  # type: ignore[union-attr]
    k = min(n_visual, cells) if n_visual is not None else cells
    mlm = round(t.mask_rate * (t.max_text_tokens - 2)) if "mlm" in t.objectives else 0
    shape = SampleShape((int(t.image_size[0]), int(t.image_size[1])), 1, grid, t.max_text_tokens, k, mlm)
    weights = {o: (t.loss_weights.get(o, 1.0) if o in t.objectives else 0.0) for o in ("mlm", "itm", "qa")}
    notes.append(f"MLM over {mlm} position(s) per sentence ({t.mask_rate:.0%} of its {t.max_text_tokens - 2} "
                 "non-special ids); ITM over every sentence; an inactive objective still runs at weight 0, as the task")
    phase = CardPhase("pretrain", lambda b: pretrain_loss(model, b, shape, weights, vocab, n_visual),  # type: ignore[arg-type]
                      1.0, f"one sentence and its image: the tower over {shape.image_hw[0]}x{shape.image_hw[1]}, "
                           f"{k} of {cells} grid tokens + {t.max_text_tokens} text ids through BERT, "
                           + " + ".join(f"{w:g} x {o.upper()}" for o, w in weights.items() if w))
    datasets: dict[str, Any] = {"source": LXMERT_SOURCE}
    train_n: int | None = 0
    for split in cfg.train.train_split.split("+"):
        files = t.splits.get(split, [])
        if split not in t.shard_splits and set(files) == LXMERT_TRAIN_FILES and not synthetic_world(t.data_dir):
            datasets[split] = {"files": list(files), "sentences": LXMERT_SENTENCES, "images": LXMERT_IMAGES}
            train_n = None if train_n is None else train_n + LXMERT_SENTENCES
        else:
            datasets[split] = {"files": list(files) or t.shard_splits.get(split), "sentences": None,
                               "note": "size not known to the card"}
            train_n = None
    for split, files in t.splits.items():
        datasets.setdefault(split, {"files": list(files), "sentences": None, "note": "size not known to the card"})
    facts = {"model": f"vl_transformer ({model.transformer.bert.config.num_hidden_layers} x "  # type: ignore[union-attr]
                      f"{model.transformer.hidden}) + {t.encoder}",  # type: ignore[union-attr]
             "objectives": {o: w for o, w in weights.items() if w}, "n_answers": n_answers, "vocab": vocab,
             "mlm_positions": mlm}
    return _parts(cfg, model, phase, shape, facts, datasets, train_n, notes)


def describe_vl_finetune(cfg: RunConfig, opts: CardOptions) -> CardParts:
    """The card parts of a CLIP-ViL_p fine-tuning recipe (VQA, GQA, SNLI-VE, NLVR2)."""
    t = cfg.task
    n_answers, how = _answers_finetune(t)
    pair = t.dataset == "nlvr2"
    model, grid, notes = build_card_model(t, n_answers, pretrain_heads=False, pair=pair)
    notes.append(how)
    base = model.transformer  # type: ignore[union-attr]
    vocab = int(base.bert.config.vocab_size)
    cells = grid[0] * grid[1]
    shape = SampleShape((int(t.image_size[0]), int(t.image_size[1])), 2 if pair else 1, grid, t.max_text_tokens,
                        cells, 0)
    loss = "BCE over soft answer scores (x answers)" if fixed_labels(t.dataset) is None else "cross-entropy"
    what = ("both images through the tower, [text ; left cells ; right cells] through BERT" if pair
            else "the tower over the image, every grid cell + the text through BERT")
    phase = CardPhase("finetune", lambda b: finetune_loss(model, b, shape, vocab, t.dataset), 1.0,
                      f"one {'pair' if pair else 'example'}: {what}, the {n_answers}-way head, {loss}")
    datasets: dict[str, Any] = {"source": FINETUNE_SOURCES.get(t.dataset, "size not known to the card")}
    for split, files in t.splits.items():
        datasets[split] = _split_sizes(t.dataset, files, synthetic_world(t.data_dir))
    unit = {"vqa": "questions", "gqa": "questions", "snli_ve": "pairs", "nlvr2": "examples"}.get(t.dataset, "")
    train_n: int | None = 0
    for split in cfg.train.train_split.split("+"):
        n = datasets.get(split, {}).get(unit)
        train_n = None if n is None or train_n is None else train_n + n
    facts = {"model": f"vl_transformer ({base.bert.config.num_hidden_layers} x {base.hidden}) + {t.encoder}"
                      + (" (NLVR2 pair model)" if pair else ""),
             "dataset": t.dataset, "n_answers": n_answers, "vocab": vocab, "loss": loss}
    return _parts(cfg, model, phase, shape, facts, datasets, train_n, notes)


register_card("vl_pretrain", describe_vl_pretrain)
register_card("vl_finetune", describe_vl_finetune)

__all__ = ["FINETUNE_SIZES", "LXMERT_SENTENCES", "SampleShape", "bert_config", "build_card_model",
           "describe_vl_finetune", "describe_vl_pretrain", "finetune_loss", "optimizer_groups", "pretrain_loss"]
