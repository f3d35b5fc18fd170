"""`clipvil card CONFIG`: a recipe's card — model size, cost per sample and per update, the compute of the whole
run, the data it expects, its seeds and the paper's number it should reproduce.

The model is built from the recipe alone (no data, no feature store): the grid comes from the encoder registry
(channels of `task.feature_encoder`, cells of `task.feature_preset` at its stride), the answers from
`task.answer_vocab` (its size) and the question words from a stated assumption. FLOPs, activation memory and
seconds are measured on one synthetic step at the recipe's grid (`clipvil.apps.card_measure`). Only what the
recipe trains is counted: the VQA recipes read cached features, so the visual tower is frozen and left out.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from clipvil.apps.card_measure import StepCost, measure_step
from clipvil.encoders import build_encoder, get_preset, tower_family
from clipvil.models.registry import build_model
from clipvil.tasks.vqa_losses import get_loss
from clipvil.train.config import RunConfig, load_config
from clipvil.train.optim import build_optimizer
from clipvil.types import GridFeatures


@dataclass(frozen=True)
class Gpu:
    """The accelerator a run's GPU-hours are estimated for."""

    name: str = "A100"
    peak_flops: float = 312e12  # dense bf16 tensor-core peak, FLOP/s (NVIDIA A100 datasheet)
    utilisation: float = 0.40  # assumed fraction of the peak a training step reaches


@dataclass(frozen=True)
class CardOptions:
    """How a card is measured."""

    gpu: Gpu = field(default_factory=Gpu)
    question_vocab: int = 20_000  # assumed question-word vocabulary (built from the data at training time)
    answers: int = 3129  # assumed answer count when the recipe builds its vocabulary from the data
    batch: int = 1  # batch of the measured steps (results are per sample)
    max_updates: int = 3  # timed updates at most ...
    budget_s: float = 4.0  # ... while under this many seconds (at least one)


# VQA v2 (Goyal et al., CVPR 2017; visualqa.org/download.html): data_subtype -> (questions, images)
VQA_SIZES: dict[str, tuple[int, int]] = {
    "train2014": (443_757, 82_783),
    "val2014": (214_354, 40_504),
    "test-dev2015": (107_394, 36_807),
    "test2015": (447_793, 81_434),
}
VQA_SIZES_SOURCE = "VQA v2 (Goyal et al., CVPR 2017), visualqa.org/download.html"
# the paper's VQA v2 test-dev accuracy for (model, encoder); the README gives the best row of each head
PAPER_VQA: dict[tuple[str, str], float] = {("pythia", "RN50x4"): 68.37, ("movie_mcan", "RN50x4"): 74.01}
PAPER_SOURCE = ("clip-vil/CLIP-ViL, CLIP-ViL-Direct/vqa/README.md: 'on VQA 2.0 test-dev ... up to 68.37% "
                "accuracy with Pythia, 74.01% accuracy with MCAN' (the best encoder row; attributed to "
                "CLIP-Res50x4, the paper's largest CLIP ResNet)")
PAPER_HEADS = {"pythia": "Pythia", "movie_mcan": "MCAN (MoVie+MCAN as run through MMF)"}


@dataclass
class Card:
    """Everything `clipvil card` reports (JSON-able through `to_dict`)."""

    recipe: str
    task: str
    model: str
    encoder: str
    grid_hw: tuple[int, int]
    grid_dim: int
    n_answers: int
    question_vocab: int
    feature_bytes: int  # cached grid features read per sample (fp16 stores)
    params: int  # trainable parameters (the frozen tower is not in the model)
    embedding_params: int  # of which the question-word embedding (depends on the vocabulary assumption)
    cost: StepCost
    batch_size: int  # global batch per update
    micro_batch: int  # per GPU per forward on one GPU (batch_size / grad_accum)
    updates: int | None  # updates of the full run (None: not derivable from the recipe)
    optimizer: str
    optimizer_states: int  # fp32 tensors per parameter the optimizer keeps
    seeds: list[int]
    datasets: dict[str, Any]
    paper: dict[str, Any]
    gpu: Gpu
    assumptions: list[str]
    machine: str = field(default_factory=lambda: f"{platform.machine()} {platform.processor() or ''} "
                                                 f"torch {torch.__version__}".strip())

    @property
    def flops_per_update(self) -> int:
        return self.cost.flops * self.batch_size

    @property
    def gpu_hours(self) -> float | None:
        """FLOPs of the whole run / (peak x utilisation), in hours."""
        if self.updates is None:
            return None
        return self.flops_per_update * self.updates / (self.gpu.peak_flops * self.gpu.utilisation) / 3600

    @property
    def peak_bytes(self) -> int:
        """Training memory on one GPU at the recipe's micro-batch: fp32 weights + gradients + optimizer states
        + the measured activations (AMP and kernel workspaces not modelled)."""
        return self.params * 4 * (2 + self.optimizer_states) + self.cost.activation_bytes * self.micro_batch

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(flops_per_sample=self.cost.flops, flops_per_update=self.flops_per_update,
                   gpu_hours=self.gpu_hours, peak_bytes_one_gpu=self.peak_bytes,
                   seconds_per_update_here=self.cost.seconds_per_update(self.batch_size))
        return out


def _grid(encoder: str, preset: str) -> tuple[tuple[int, int], int, str]:
    """((h, w), channels, how) of the grids `encoder` gives at `preset`, the tower built on the meta device."""
    size = get_preset(preset).size
    with torch.device("meta"):
        tower = build_encoder(encoder)
        if size is None:
            size = (tower.native_size, tower.native_size)
        if tower_family(encoder) == "clip-vit":  # patch conv, kernel = stride: floor division
            hw = (size[0] // tower.stride, size[1] // tower.stride)
        else:
            hw = tower(torch.empty(1, 3, *size)).hw
    return hw, tower.dim, f"{encoder} at the {preset!r} preset ({size[0]}x{size[1]} input, stride {tower.stride})"


def _vqa_parts(cfg: RunConfig, opts: CardOptions) -> tuple[Any, dict[str, Any], list[str]]:
    """(model, facts, assumptions) of a VQA recipe, without its data."""
    t = cfg.task
    notes: list[str] = []
    if not t.feature_encoder:
        raise ValueError("card: the recipe sets no task.feature_encoder; pass one, e.g. task.feature_encoder=RN50")
    preset = t.feature_preset or "vqa"
    if not t.feature_preset:
        notes.append("no task.feature_preset: the 'vqa' preset (600x1000) assumed")
    encoders = [t.feature_encoder] * len(t.features)  # a plugin of several stores repeats the one encoder named
    hw, dim, how = _grid(encoders[0], preset)
    grid_dim = dim * len(encoders)
    notes.append(f"grid {hw[0]}x{hw[1]}x{grid_dim} from {how}" + (f", {len(encoders)} stores" if len(encoders) > 1
                                                                  else ""))
    if t.answer_vocab is not None and (Path(t.answer_vocab) / "trainval_label2ans.json").is_file():
        n_answers = len(json.loads((Path(t.answer_vocab) / "trainval_label2ans.json").read_text()))
        notes.append(f"{n_answers} answers: the size of {Path(t.answer_vocab) / 'trainval_label2ans.json'}")
    else:
        n_answers = opts.answers
        notes.append(f"{n_answers} answers assumed (the answer vocabulary is built from the data, or its file "
                     "is not here)")
    notes.append(f"question vocabulary of {opts.question_vocab:,} words assumed (built from the data at "
                 "training time; only the word-embedding size depends on it)")
    with torch.device("meta"):  # no initialisation work: the values do not matter for the costs
        model = build_model(t.model, t.preset, t.model_overrides, grid_dim=grid_dim,
                            vocab_size=opts.question_vocab, n_answers=n_answers)
    model = _materialise(model)
    facts = {"model": f"{t.model}/{t.preset}", "encoder": t.feature_encoder, "grid_hw": hw, "grid_dim": grid_dim,
             "n_answers": n_answers, "tokens": t.question_max_tokens, "loss": t.loss}
    return model, facts, notes


def _materialise(model: torch.nn.Module) -> torch.nn.Module:
    """A meta-device model on the CPU with small random values (integer buffers zero)."""
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            if tensor.is_floating_point():
                tensor.uniform_(-0.05, 0.05)
            else:
                tensor.zero_()
    return model


def _vqa_loss_fn(model: Any, facts: dict[str, Any], vocab: int):
    loss = get_loss(facts["loss"])
    h, w = facts["grid_hw"]

    def run(batch: int) -> torch.Tensor:
        grid = GridFeatures(torch.randn(batch, h * w, facts["grid_dim"]), torch.ones(batch, h * w, dtype=torch.bool),
                            (h, w))  # [B, N, C]
        tokens = torch.randint(1, vocab, (batch, facts["tokens"]))  # [B, T]
        target = (torch.rand(batch, facts["n_answers"]) < 3 / facts["n_answers"]).float()  # [B, A] soft scores
        return loss(model, grid, tokens, target)

    return run


def _embedding_params(model: torch.nn.Module, vocab: int) -> int:
    return sum(m.weight.numel() for m in model.modules()
               if isinstance(m, torch.nn.Embedding) and m.num_embeddings == vocab)


def _vqa_datasets(cfg: RunConfig) -> tuple[dict[str, Any], int | None]:
    """({split name: {subtype, questions, images}}, questions of the training split or None)."""
    t = cfg.task
    out: dict[str, Any] = {"source": VQA_SIZES_SOURCE}
    train_n: int | None = 0
    for part in cfg.train.train_split.split("+"):
        sub = t.splits.get(part)
        if sub in VQA_SIZES:
            out[part] = {"subtype": sub, "questions": VQA_SIZES[sub][0], "images": VQA_SIZES[sub][1]}
            train_n = None if train_n is None else train_n + VQA_SIZES[sub][0]
        else:
            files = t.split_files.get(part, [sub])
            out[part] = {"files": files, "questions": None, "note": "size not known to the card"}
            train_n = None
    for name, sub in t.splits.items():
        if name not in out and sub in VQA_SIZES:
            out[name] = {"subtype": sub, "questions": VQA_SIZES[sub][0], "images": VQA_SIZES[sub][1]}
    return out, train_n


def _updates(cfg: RunConfig, train_n: int | None) -> int | None:
    """The engine's update count: max_steps, or epochs x (train questions // batch), the smaller of both."""
    t = cfg.train
    by_epochs = t.epochs * (train_n // t.batch_size) if t.epochs > 0 and train_n is not None else None
    if t.max_steps > 0:
        return min(t.max_steps, by_epochs) if by_epochs is not None else t.max_steps
    return by_epochs


def _paper(model: str, encoder: str) -> dict[str, Any]:
    if model not in PAPER_HEADS:
        return {"reproduces": None, "note": f"{model} is not one of the paper's VQA heads "
                                            f"({', '.join(PAPER_HEADS.values())}): a clipvil baseline"}
    value = PAPER_VQA.get((model, encoder))
    row = f"{PAPER_HEADS[model]} / {encoder}"
    if value is None:
        return {"reproduces": None, "row": row, "note": "a row of the paper's VQA table (Shen et al., ICLR 2022, "
                "Table 1); its number was not available in the sources read for this card"}
    return {"reproduces": value, "metric": "VQA v2 test-dev accuracy", "row": row, "source": PAPER_SOURCE}


_OPT_STATES = {"adamw": 2, "adam": 2, "adamax": 2, "rmsprop": 1}


def make_card(config: str | Path, overrides: list[str] | None = None, options: CardOptions | None = None,
              cache: dict[Any, StepCost] | None = None) -> Card:
    """The card of a recipe; `cache` shares measurements between recipes of the same model, grid and optimizer."""
    opts = options or CardOptions()
    cfg = load_config(config, overrides)
    if cfg.task_name != "vqa":
        raise ValueError(f"card: task {cfg.task_name!r} has no card yet (cards cover the VQA recipes)")
    torch.manual_seed(cfg.train.seed)
    model, facts, notes = _vqa_parts(cfg, opts)
    key = (facts["model"], json.dumps(cfg.task.model_overrides, sort_keys=True), facts["grid_hw"],
           facts["grid_dim"], facts["n_answers"], facts["loss"], cfg.optim.name, opts.batch)
    if cache is None or key not in cache:
        optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], cfg.optim)
        cost = measure_step(model, _vqa_loss_fn(model, facts, opts.question_vocab), optimizer, opts.batch,
                            opts.max_updates, opts.budget_s)
        if cache is not None:
            cache[key] = cost
    cost = cache[key] if cache is not None else cost
    datasets, train_n = _vqa_datasets(cfg)
    updates = _updates(cfg, train_n)
    if updates is None:
        notes.append("run length not derivable: epochs over a training split of unknown size")
    notes.append(f"seconds per update: {cost.updates} update(s) of batch {cost.batch} on random data here "
                 f"(the fastest), forward + backward scaled linearly to the recipe's batch of "
                 f"{cfg.train.batch_size}, plus one optimizer step")
    notes.append(f"GPU-hours: FLOPs / ({opts.gpu.name} {opts.gpu.peak_flops / 1e12:.0f} TFLOP/s dense bf16 x "
                 f"{opts.gpu.utilisation:.0%} utilisation); data loading and evaluation not counted")
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return Card(
        recipe=str(config), task=cfg.task_name, model=facts["model"], encoder=facts["encoder"],
        grid_hw=facts["grid_hw"], grid_dim=facts["grid_dim"], n_answers=facts["n_answers"],
        feature_bytes=facts["grid_hw"][0] * facts["grid_hw"][1] * facts["grid_dim"] * 2,
        question_vocab=opts.question_vocab, params=params,
        embedding_params=_embedding_params(model, opts.question_vocab), cost=cost,
        batch_size=cfg.train.batch_size, micro_batch=cfg.train.batch_size // cfg.train.grad_accum,
        updates=updates, optimizer=cfg.optim.name,
        optimizer_states=_OPT_STATES.get(cfg.optim.name, 1 if cfg.optim.momentum else 0),
        seeds=[cfg.train.seed], datasets=datasets, paper=_paper(cfg.task.model, facts["encoder"]),
        gpu=opts.gpu, assumptions=notes,
    )


def _si(value: float, unit: str) -> str:
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {prefix}{unit}"
    return f"{value:.0f} {unit}"


def to_markdown(card: Card) -> str:
    """The card as a Markdown section."""
    c, hours = card.cost, card.gpu_hours
    paper = card.paper
    reproduces = (f"{paper['reproduces']} ({paper['metric']}, {paper['row']}; {paper['source']})"
                  if paper.get("reproduces") is not None else paper["note"])
    sets = "; ".join(f"{k}: {v['questions']:,} questions / {v['images']:,} images ({v['subtype']})"
                     if v.get("questions") else f"{k}: {v.get('files')} ({v.get('note')})"
                     for k, v in card.datasets.items() if k != "source")
    lines = [
        f"### {card.recipe}", "",
        (f"- **model**: {card.model} over {card.encoder} grids {card.grid_hw[0]}x{card.grid_hw[1]}x"
         f"{card.grid_dim}, {card.n_answers} answers (visual tower frozen, features cached: not counted)"),
        f"- **parameters**: {card.params:,} trainable ({card.embedding_params:,} in the question-word embedding)",
        (f"- **FLOPs**: {_si(c.flops, 'FLOP')} per training sample (forward + backward), "
         f"{_si(card.flops_per_update, 'FLOP')} per update of {card.batch_size}"),
        (f"- **memory**: {_si(c.activation_bytes, 'B')} of activations per sample (measured, fp32); "
         f"~{_si(card.peak_bytes, 'B')} on one GPU at micro-batch {card.micro_batch} with {card.optimizer} "
         "(weights + gradients + optimizer states + activations)"),
        (f"- **measured here**: {c.seconds_per_update(card.batch_size):.1f} s per update of {card.batch_size} "
         f"({c.seconds:.2f} s forward + backward per sample, {c.optimizer_seconds:.2f} s optimizer step; batch "
         f"{c.batch}, {c.threads} thread(s), {card.machine})"),
        (f"- **input**: {_si(card.feature_bytes, 'B')} of fp16 grid features read per sample, "
         f"{_si(card.feature_bytes * card.batch_size, 'B')} per update"),
        f"- **run**: {card.updates:,} updates" if card.updates is not None else "- **run**: length unknown",
        f"- **estimated compute**: {hours:,.1f} GPU-hours on {card.gpu.name} at {card.gpu.utilisation:.0%}"
        if hours is not None else "- **estimated compute**: not derivable",
        f"- **data**: {sets} (source: {card.datasets['source']})",
        f"- **seeds**: {card.seeds}",
        f"- **paper**: {reproduces}",
        "- **assumptions**: " + "; ".join(card.assumptions),
    ]
    return "\n".join(lines) + "\n"


__all__ = ["PAPER_VQA", "VQA_SIZES", "Card", "CardOptions", "Gpu", "make_card", "to_markdown"]
