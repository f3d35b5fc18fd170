"""`clipvil card CONFIG`: a recipe's card — model size, cost per sample and per update of each training phase,
the compute of the whole run, the data it expects, its seeds and the paper's number it should reproduce.

The recipe's task family describes it (`clipvil.apps.card_parts`: a describer registered per task builds the
model from the recipe alone and one loss function per phase over random batches at the recipe's shapes); this
module measures every phase (`clipvil.apps.card_measure`: FLOPs, activations, seconds of clean updates here),
counts the run's updates as the engine does (max_steps, or epochs x (training samples // batch), the smaller;
per phase from the recipe's `phases:`), and assembles the card:

- run FLOPs = sum over phases of (updates of the phase x batch x FLOPs per sample of the phase) — the
  share-weighted sum; GPU-hours = run FLOPs / (the GPU's peak x the stated utilisation);
- peak memory on one GPU = fp32 weights + gradients (trainable) + frozen weights + the optimizers' measured
  states + activations per sample x micro-batch, the largest over the phases;
- evaluation-only recipes (zero-shot retrieval / VQA) have no updates: forward FLOPs per test sample, and
  the whole evaluation's FLOPs and GPU-hours.

Optimizers are stepped at learning rate 0 while measuring (the weights keep their small random values; a
step's time does not depend on the rate).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

# every describer module registers its tasks on import
from clipvil.apps import card_caption, card_clip, card_grounding, card_vl, card_vln, card_vqa  # noqa: F401
from clipvil.apps.card_measure import StepCost, measure_step
from clipvil.apps.card_paper import no_number_reason, paper_number
from clipvil.apps.card_parts import CardOptions, CardParts, CardPhase, Gpu, describer
from clipvil.engine.config import RunConfig, load_config
from clipvil.engine.optim import build_optimizer, partition_parameters
from clipvil.engine.phases import plan_phases


@dataclass
class PhaseCard:
    """One measured phase of a recipe."""

    name: str
    note: str
    share: float  # fraction of the run's updates (evaluation-only: 1)
    updates: int | None  # updates of the phase (None: unknown)
    repeat: float  # runs of the step per sample (evaluation-only parts; 1 for training)
    optimizers: list[str]  # "main: adam", "trunk: sgd" ...
    cost: StepCost


@dataclass
class Card:
    """Everything `clipvil card` reports (JSON-able through `to_dict`)."""

    recipe: str  # the recipe as named (a packaged name like "vqa/mcan_rn50", or the file as given)
    task: str
    facts: dict[str, Any]  # the describer's: model, encoder, grid, vocabularies, ...
    params: int  # trainable parameters (what the recipe trains)
    frozen_params: int  # parameters kept frozen (still in memory; forward FLOPs counted when they run)
    embedding_params: int  # of the trainable ones: in an embedding sized by an assumed vocabulary
    phases: list[PhaseCard]
    batch_size: int  # global batch per update
    micro_batch: int  # per GPU per forward on one GPU (batch_size / grad_accum)
    updates: int | None  # updates of the full run (None: not derivable; evaluation-only: None)
    evaluation_only: bool
    eval_samples: int | None  # evaluation-only: samples of the evaluated set
    input_bytes: int  # bytes read per sample (cached features or pixels)
    seeds: list[int]
    datasets: dict[str, Any]
    paper: dict[str, Any]
    gpu: Gpu
    assumptions: list[str]
    device: str = "cpu"
    machine: str = field(default_factory=lambda: _machine("cpu"))
    config_file: str = ""  # the YAML file read (a packaged recipe's full path)

    @property
    def flops_per_sample(self) -> int:
        """Training: the share-weighted forward + backward FLOPs of a sample; evaluation: its forward FLOPs."""
        if self.evaluation_only:
            return int(sum(p.repeat * p.cost.flops for p in self.phases))
        return int(sum(p.share * p.cost.flops for p in self.phases))

    @property
    def flops_per_update(self) -> int | None:
        return None if self.evaluation_only else self.flops_per_sample * self.batch_size

    @property
    def total_flops(self) -> float | None:
        """FLOPs of the whole run (sum over phases), or of the whole evaluation."""
        if self.evaluation_only:
            return None if self.eval_samples is None else float(self.flops_per_sample) * self.eval_samples
        if any(p.updates is None for p in self.phases):
            return None
        return float(sum(p.updates * self.batch_size * p.cost.flops for p in self.phases))  # type: ignore[operator]

    @property
    def gpu_hours(self) -> float | None:
        """Run FLOPs / (peak x utilisation), in hours."""
        total = self.total_flops
        return None if total is None else total / (self.gpu.peak_flops * self.gpu.utilisation) / 3600

    def peak_bytes_of(self, phase: PhaseCard) -> int:
        """fp32 weights (+ gradients of the trainable ones) + optimizer states + activations x micro-batch."""
        weights = (self.params * (1 if self.evaluation_only else 2) + self.frozen_params) * 4
        return weights + phase.cost.optimizer_state_bytes + phase.cost.activation_bytes * self.micro_batch

    @property
    def peak_bytes(self) -> int:
        return max(self.peak_bytes_of(p) for p in self.phases)

    @property
    def seconds_here(self) -> float:
        """Training: seconds of an update here (share-weighted over phases); evaluation: seconds of a sample."""
        if self.evaluation_only:
            return sum(p.repeat * p.cost.seconds for p in self.phases)
        return sum(p.share * p.cost.seconds_per_update(self.batch_size) for p in self.phases)

    @property
    def hours_here(self) -> float | None:
        """The whole run (or evaluation) at the measured speed here, in hours."""
        n = self.eval_samples if self.evaluation_only else self.updates
        return None if n is None else n * self.seconds_here / 3600

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for d, phase in zip(out["phases"], self.phases):
            d["peak_bytes_one_gpu"] = self.peak_bytes_of(phase)
            if not self.evaluation_only:
                d["seconds_per_update_here"] = phase.cost.seconds_per_update(self.batch_size)
        out.update(flops_per_sample=self.flops_per_sample, flops_per_update=self.flops_per_update,
                   total_flops=self.total_flops, gpu_hours=self.gpu_hours, peak_bytes_one_gpu=self.peak_bytes,
                   seconds_here=self.seconds_here, hours_here=self.hours_here)
        return out


def _machine(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(torch.device(device))}, torch {torch.__version__}"
    return f"{platform.machine()} CPU ({os.cpu_count()} cores), torch {torch.__version__}"


def _updates(cfg: RunConfig, train_n: int | None) -> int | None:
    """The engine's update count: max_steps, or epochs x (train samples // batch), the smaller of both."""
    t = cfg.train
    by_epochs = t.epochs * (train_n // t.batch_size) if t.epochs > 0 and train_n is not None else None
    if t.max_steps > 0:
        return min(t.max_steps, by_epochs) if by_epochs is not None else t.max_steps
    return by_epochs


def _phase_updates(cfg: RunConfig, parts: CardParts, updates: int | None) -> list[tuple[float, int | None]]:
    """(share, updates) of each card phase: from the recipe's `phases:` when the card phase is one of them
    (epoch starts converted with train samples // batch), else the describer's share of the run."""
    if updates is None:
        return [(p.share, None) for p in parts.phases]
    per_epoch = max((parts.train_samples or 0) // cfg.train.batch_size, 1)
    plan = plan_phases(cfg, per_epoch, updates)
    out = []
    for p in parts.phases:
        if cfg.phases and p.name in plan.names:
            start, end = plan.bounds(p.name)
            n = max(end - start, 0)
            out.append((n / updates if updates else 0.0, n))
        else:
            out.append((p.share, round(p.share * updates)))
    return out


def _optimizers(model: nn.Module, cfg: RunConfig, phase: str, notes: list[str]
                ) -> tuple[list[torch.optim.Optimizer], list[str]]:
    """The optimizers of `phase` as the engine builds them (main: the phase's own settings when it has them;
    extra optimizers over their sub-modules), at learning rate 0."""
    phase_cfg = next((p for p in cfg.phases if p.name == phase), None)
    main = phase_cfg.optim if phase_cfg is not None and phase_cfg.optim is not None else cfg.optim
    settings = {"main": main, **{n: e.optim for n, e in cfg.extra_optimizers.items()}}
    try:
        groups = partition_parameters(model, cfg)
    except ValueError as err:
        notes.append(f"the card's model does not split as extra_optimizers says ({err}): one {main.name} "
                     "optimizer over every trainable parameter measured")
        groups, settings = {"main": [p for p in model.parameters() if p.requires_grad]}, {"main": main}
    opts = [build_optimizer(params, dataclasses.replace(settings[name], lr=0.0)) for name, params in groups.items()]
    return opts, [f"{name}: {settings[name].name}" for name in groups]


def _key(cfg: RunConfig, parts: CardParts, phase: CardPhase, opts: CardOptions, optimizers: list[str]) -> str:
    """What a phase's measurement depends on: the model's structure, the inputs, the optimizers."""
    inputs = parts.measure_key if parts.measure_key is not None else parts.facts
    structure = hashlib.sha1(str(parts.model).encode()).hexdigest()
    trainable = sum(p.numel() for p in parts.model.parameters() if p.requires_grad)
    return json.dumps([cfg.task_name, structure, trainable, inputs, phase.name, phase.note, optimizers,
                       opts.batch, opts.device, parts.evaluation_only], sort_keys=True, default=str)


def _measure(cfg: RunConfig, parts: CardParts, opts: CardOptions, cache: dict[Any, StepCost] | None,
             notes: list[str]) -> list[tuple[StepCost, list[str]]]:
    out = []
    model = parts.model.to(opts.device)
    for phase in parts.phases:
        if parts.evaluation_only:
            optimizers, names = [], []
        else:
            optimizers, names = _optimizers(model, cfg, phase.name, notes)
        key = _key(cfg, parts, phase, opts, names)
        if cache is None or key not in cache:
            cost = measure_step(model, phase.loss_fn, optimizers, opts.batch, opts.max_updates, opts.budget_s,
                                opts.device, forward_only=parts.evaluation_only)
            if cache is not None:
                cache[key] = cost
        else:
            cost = cache[key]
        out.append((cost, names))
    return out


def _refuse_study(config: str | Path) -> None:
    """A study YAML (top-level `adapter` and `encoders`) is not a recipe: say which command reads it."""
    try:
        data = yaml.safe_load(Path(config).read_text())
    except (OSError, yaml.YAMLError):
        return  # load_config reports it
    if isinstance(data, dict) and "adapter" in data and "encoders" in data:
        raise ValueError(f"{config}: is a study config, not a recipe: run `clipvil study {config}`")


def make_card(config: str | Path, overrides: list[str] | None = None, options: CardOptions | None = None,
              cache: dict[Any, StepCost] | None = None, name: str | None = None) -> Card:
    """The card of a recipe; `cache` shares measurements between recipes whose phases cost the same. `name`:
    the recipe as the user named it (e.g. "vqa/mcan_rn50", the card's title and `recipe`; default `config`)."""
    opts = options or CardOptions()
    _refuse_study(config)
    cfg = load_config(config, overrides)
    torch.manual_seed(cfg.train.seed)
    parts = describer(cfg.task_name)(cfg, opts)
    if not parts.phases:
        raise ValueError(f"card: the {cfg.task_name} describer gave no phase for {config}")
    notes = list(parts.notes)
    updates = None if parts.evaluation_only else _updates(cfg, parts.train_samples)
    if updates is None and not parts.evaluation_only:
        notes.append("run length not derivable: epochs over a training split of unknown size")
    measured = _measure(cfg, parts, opts, cache, notes)
    shares = [(1.0, None)] * len(parts.phases) if parts.evaluation_only else _phase_updates(cfg, parts, updates)
    phases = [PhaseCard(p.name, p.note, share, n, p.repeat, names, cost)
              for p, (share, n), (cost, names) in zip(parts.phases, shares, measured)]
    notes += _method_notes(phases[0].cost, cfg, opts, parts.evaluation_only)
    params = sum(p.numel() for p in parts.model.parameters() if p.requires_grad)
    frozen = parts.frozen_params or sum(p.numel() for p in parts.model.parameters() if not p.requires_grad)
    return Card(
        recipe=name or str(config), task=cfg.task_name, facts=parts.facts, params=params, frozen_params=frozen,
        embedding_params=parts.embedding_params, phases=phases, batch_size=cfg.train.batch_size,
        micro_batch=cfg.train.batch_size // cfg.train.grad_accum, updates=updates,
        evaluation_only=parts.evaluation_only, eval_samples=parts.eval_samples, input_bytes=parts.input_bytes,
        seeds=[cfg.train.seed], datasets=parts.datasets, paper=_paper(config), gpu=opts.gpu, assumptions=notes,
        device=opts.device, machine=_machine(opts.device), config_file=str(config),
    )


def _method_notes(cost: StepCost, cfg: RunConfig, opts: CardOptions, evaluation: bool) -> list[str]:
    g = opts.gpu
    what = "forward" if evaluation else "forward + backward"
    notes = [f"seconds: the fastest of {cost.updates} clean update(s) of batch {cost.batch} on random data on "
             f"{cost.device} ({cost.threads} thread(s), load average {cost.load:.1f} on {os.cpu_count()} cores), "
             f"timed apart from the FLOP-counting one; {what} scaled linearly"
             + ("" if evaluation else f" to the recipe's batch of {cfg.train.batch_size}, plus one step of "
                "every optimizer (stepped at learning rate 0)")]
    if cost.device == "cpu" and cost.load > (os.cpu_count() or 1):
        notes.append(f"the machine was busy while measuring (load {cost.load:.1f} > {os.cpu_count()} cores): "
                     "the seconds are slower than this CPU alone")
    peak = "as given by --gpu-tflops" if g.precision == "stated" else f"dense {g.precision}"
    notes.append(f"GPU-hours: FLOPs / ({g.name} {g.peak_flops / 1e12:.0f} TFLOP/s {peak} x "
                 f"{g.utilisation:.0%} utilisation); data loading" + (" and evaluation" if not evaluation else "")
                 + " not counted")
    if cfg.train.amp != "none":
        notes.append(f"the recipe trains under {cfg.train.amp} autocast: activations are measured in fp32 (about "
                     "twice what autocast keeps)")
    return notes


def _paper(recipe: str | Path) -> dict[str, Any]:
    number = paper_number(recipe)
    if number is not None:
        return {"reproduces": number.value, "metric": number.metric, "row": number.row, "source": number.source,
                "extra": dict(number.extra)}
    reason = no_number_reason(recipe)
    return {"reproduces": None, "note": reason or "not a recipe of the paper's experiments (a clipvil recipe)"}


def _si(value: float, unit: str) -> str:
    for factor, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {prefix}{unit}"
    return f"{value:.0f} {unit}"


def _hours(hours: float) -> str:
    """1,552 / 17.4 / 1.17 / 0.0031: three significant digits below 100."""
    return f"{hours:,.0f}" if hours >= 100 else f"{hours:.3g}"


def _datasets_line(datasets: dict[str, Any]) -> str:
    parts = []
    for name, split in datasets.items():
        if name == "source" or not isinstance(split, dict):
            continue
        counts = [f"{v:,} {k}" for k, v in split.items() if isinstance(v, int) and not isinstance(v, bool)]
        words = [f"{v}" for k, v in split.items() if isinstance(v, str) and k != "note"]
        text = " / ".join(counts) if counts else "size not known to the card"
        extra = ", ".join(words + ([split["note"]] if split.get("note") and counts else []))
        parts.append(f"{name}: {text}" + (f" ({extra})" if extra else ""))
    return "; ".join(parts) + f" (source: {datasets.get('source', 'not stated')})"


def _facts_line(facts: dict[str, Any]) -> str:
    def show(v: Any) -> str:
        if isinstance(v, (tuple, list)) and all(isinstance(x, int) for x in v):
            return "x".join(str(x) for x in v)
        return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)

    return ", ".join(f"{k} {show(v)}" for k, v in facts.items())


def _phase_lines(card: Card) -> list[str]:
    lines = []
    for p in card.phases:
        c = p.cost
        head = f"  - *{p.name}*" + (f" ({p.note})" if p.note else "")
        if card.evaluation_only:
            lines.append(f"{head}, x{p.repeat:,g} per sample: {_si(c.flops, 'FLOP')} forward, "
                         f"{c.seconds:.3f} s here")
            continue
        share = f"{p.share:.1%} of the updates" + (f", {p.updates:,}" if p.updates is not None else "")
        lines.append(f"{head}, {share}: {_si(c.flops, 'FLOP')} per sample (forward + backward), "
                     f"{_si(c.activation_bytes, 'B')} of activations per sample, "
                     f"{c.seconds_per_update(card.batch_size):,.1f} s per update here ({c.seconds:.3f} s forward + "
                     f"backward per sample, {c.optimizer_seconds:.3f} s optimizer step; {', '.join(p.optimizers)}: "
                     f"{_si(c.optimizer_state_bytes, 'B')} of states), ~{_si(card.peak_bytes_of(p), 'B')} on one GPU")
    return lines


def to_markdown(card: Card) -> str:
    """The card as a Markdown section."""
    paper = card.paper
    reproduces = (f"{paper['reproduces']} ({paper['metric']}; {paper['row']}; {paper['source']})"
                  if paper.get("reproduces") is not None else paper["note"])
    hours, total = card.gpu_hours, card.total_flops
    frozen = f", {card.frozen_params:,} frozen" if card.frozen_params else ""
    emb = f" ({card.embedding_params:,} in an embedding sized by an assumed vocabulary)" if card.embedding_params \
        else ""
    here = card.hours_here
    if card.evaluation_only:
        run = (f"- **evaluation only**: no training; {_si(card.flops_per_sample, 'FLOP')} forward per sample over "
               + (f"{card.eval_samples:,} samples" if card.eval_samples is not None else "a set of unknown size")
               + f"; {card.seconds_here:.2f} s per sample here"
               + (f", {_hours(here)} h for the whole set here" if here is not None else ""))
        cost = f"- **cost per sample** ({len(card.phases)} part(s)):"
    else:
        run = (f"- **run**: {card.updates:,} updates of {card.batch_size} (micro-batch {card.micro_batch}); "
               f"{_si(card.flops_per_sample, 'FLOP')} per sample and {_si(card.flops_per_update or 0, 'FLOP')} "
               f"per update (share-weighted over the phases); {card.seconds_here:,.1f} s per update here"
               + (f", {_hours(here)} h for the run here" if here is not None else "")
               if card.updates is not None else "- **run**: length unknown")
        cost = f"- **phases** ({len(card.phases)}):"
    counted = (f"{card.params + card.frozen_params:,} (evaluated; nothing is trained)" if card.evaluation_only
               else f"{card.params:,} trainable{frozen}{emb}")
    lines = [
        f"### {card.recipe}", "",
        f"- **recipe**: task {card.task}; {_facts_line(card.facts)}",
        f"- **parameters**: {counted}",
        cost, *_phase_lines(card),
        run,
        f"- **memory**: ~{_si(card.peak_bytes, 'B')} peak on one GPU (fp32 weights + gradients + optimizer states "
        f"+ activations x micro-batch {card.micro_batch}, the largest phase; AMP and workspaces not modelled)"
        if not card.evaluation_only else
        f"- **memory**: {_si(card.peak_bytes, 'B')} of fp32 weights (forward activations are not kept)",
        f"- **input**: {_si(card.input_bytes, 'B')} read per sample",
        (f"- **estimated compute**: {_si(total, 'FLOP')} in all, {_hours(hours)} GPU-hours on {card.gpu.name} at "
         f"{card.gpu.utilisation:.0%}" if hours is not None and total is not None
         else "- **estimated compute**: not derivable"),
        f"- **data**: {_datasets_line(card.datasets)}",
        f"- **seeds**: {card.seeds}",
        f"- **measured on**: {card.machine} ({card.device})",
        f"- **paper**: {reproduces}",
        "- **assumptions**: " + "; ".join(card.assumptions),
    ]
    return "\n".join(lines) + "\n"


__all__ = ["Card", "CardOptions", "Gpu", "PhaseCard", "make_card", "to_markdown"]
