"""Typed run configuration: YAML files (+ `includes`) + `key.sub=value` overrides -> `RunConfig`.

A run config has these top-level sections:

    task:              {name: <registered task>, ...the task's own config dataclass fields}
    optim:             OptimConfig        (the main optimizer: every trainable parameter not claimed below)
    schedule:          ScheduleConfig     (the main optimizer's learning-rate schedule)
    extra_optimizers:  {name: ExtraOptimizerConfig}  (optional: own optimizer + schedule for sub-modules)
    phases:            [PhaseConfig, ...]  (optional: named phases switched at a step or an epoch)
    train:             TrainConfig
    out_dir:           run directory (checkpoints, logs, config.yaml, evaluation results)
    includes:          [other.yaml, ...]  (optional: files merged first, relative to this file)

Every key is checked against the dataclasses: an unknown key or a wrongly typed value fails at load time
with the file (or the override) and the dotted key in the message. A mapping field with defaults (e.g.
`task.splits`) is merged key by key with what a file or an override gives, so `task.splits.test=test2015`
adds a split instead of replacing them all. Path fields (and `out_dir`) are made absolute when the config is
loaded, so a saved run config works from any working directory.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from clipvil.engine.config_io import (
    Sources,
    apply_overrides,
    build_checked,
    convert,
    fail,
    plain_data,
    read_yaml,
)
from clipvil.engine.registry import get_task

SECTION_ORDER = ("task", "optim", "schedule", "extra_optimizers", "phases", "train", "out_dir")


@dataclass
class OptimConfig:
    """One torch.optim optimizer."""

    name: Literal["adamw", "adamax", "adam", "sgd", "rmsprop"] = "adamw"  # torch.optim.AdamW | Adamax | Adam |
    # SGD | RMSprop (alpha 0.99, torch's default, as R2R-EnvDrop's --optim rms)
    lr: float = 1e-4  # base learning rate; the schedule multiplies it (for `noam` it is the scale factor)
    betas: tuple[float, float] = (0.9, 0.999)  # Adam-family moment decay rates
    eps: float = 1e-8  # Adam-family denominator epsilon
    weight_decay: float = 0.0  # L2 (adam, adamax, sgd) or decoupled (adamw) weight decay
    momentum: float = 0.0  # SGD / RMSprop momentum
    nesterov: bool = False  # SGD Nesterov momentum
    decay_1d: bool = True  # False: 1-D parameters (biases, norm weights) get no weight decay (BERT style)


@dataclass
class ScheduleConfig:
    """Learning-rate multiplier as a function of the update index (0 for the first update)."""

    name: Literal["step", "linear", "cosine", "noam"] = "step"  # step: warm-up, then x`decay` at each
    # milestone (Pythia, MCAN); linear: warm-up, then linear decay to 0 at the last update (BERT/LXMERT);
    # cosine: warm-up, then half a cosine down to 0 at the last update (open_clip's trainer);
    # noam: d_model^-0.5 * min(n^-0.5, n * warmup^-1.5), n = update index + 1 (Transformer captioning)
    unit: Literal["step", "epoch"] = "step"  # unit of `warmup` and `milestones` (updates or whole epochs)
    warmup: int = 0  # warm-up length in `unit`s (0: no warm-up)
    warmup_mode: Literal["linear", "staircase"] = "linear"  # linear: from `warmup_factor` up to 1 at
    # `warmup` (MMF); staircase: (k+1)/(warmup+1) in unit k < warmup (mcan-vqa: 1/4, 2/4, 3/4)
    warmup_factor: float = 0.0  # linear warm-up: the multiplier at the first update
    milestones: list[int] = field(default_factory=list)  # `step`: unit indices (0-based) from which the lr
    # is multiplied by one more `decay`
    decay: float = 0.1  # `step`: factor applied at each milestone
    d_model: int = 512  # `noam`: model width in the formula
    every: int = 1  # the optimizer steps on updates with (update index - offset) % every == 0 ...
    offset: int = 0  # ... (alternating optimizers: every 2, offsets 0 and 1)
    phases: list[str] = field(default_factory=list)  # ... and only in these phases (empty: in every phase);
    # a schedule counts its own optimizer's updates (the multiplier of its k-th update is factor(k))


@dataclass
class ExtraOptimizerConfig:
    """A second optimizer for some sub-modules (e.g. the CLIP trunk with SGD beside an AdamW transformer)."""

    modules: list[str] = field(default_factory=list)  # sub-module paths (`model.get_submodule` names, e.g.
    # "encoder.trunk") whose trainable parameters this optimizer owns
    optim: OptimConfig = field(default_factory=OptimConfig)  # the optimizer of these parameters
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)  # and its learning-rate schedule


@dataclass
class PhaseConfig:
    """A named stretch of a run (cross-entropy, then self-critical training); the task is told each switch."""

    name: str = "train"  # passed to task.set_phase()
    start_epoch: int = -1  # the phase begins at this epoch (set this or start_step; the first phase: 0)
    start_step: int = -1  # ... or at this update
    optim: OptimConfig | None = None  # a fresh main optimizer with these settings from the phase's start
    schedule: ScheduleConfig | None = None  # and its schedule, counted from the phase's start


@dataclass
class TrainConfig:
    """The training loop's knobs."""

    batch_size: int = 64  # global batch per update = micro-batch x grad_accum x world size
    grad_accum: int = 1  # micro-batches accumulated per update on each rank
    max_steps: int = 0  # number of updates (0: given by `epochs`; both set: the smaller)
    epochs: int = 0  # number of passes over the train split (0: given by `max_steps`)
    amp: Literal["none", "bf16", "fp16"] = "none"  # autocast dtype; fp16 adds a GradScaler
    clip_grad_norm: float = 0.0  # max global L2 norm of the gradients (0: no clipping)
    shuffle: bool = True  # shuffle the train split each epoch (seeded by `seed` and the epoch)
    train_split: str = "train"  # split passed to task.dataset() for training
    eval_splits: list[str] = field(default_factory=lambda: ["val"])  # splits evaluated during training,
    # each logged under its name ([]: never evaluate)
    best_split: str = ""  # the split whose primary metric picks best.pt ("": the first of eval_splits)
    eval_batch_size: int = 0  # batch size of evaluation (0: the per-rank micro-batch)
    eval_every: int = 0  # evaluate every N updates (0: not on a step count)
    eval_each_epoch: bool = True  # evaluate at the end of every epoch
    eval_at_end: bool = True  # evaluate after the last update
    save_predictions: bool = True  # let task.evaluate write its results file under out_dir/eval/step<N>/
    checkpoint_every: int = 1000  # write checkpoints/last.pt every N updates (also at epoch ends and the end)
    log_every: int = 10  # write a log record (mean over the window) every N updates
    num_workers: int = 0  # DataLoader worker processes per rank
    seed: int = 0  # seeds model init (all ranks alike), shuffling and each rank's RNG stream
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when available
    init_from: str = ""  # checkpoint whose model weights initialise a fresh run (ignored when resuming)
    init_strict: bool = True  # init_from: fail on missing/unexpected keys (shape mismatches always fail)
    init_key_map: dict[str, str] = field(default_factory=dict)  # init_from: rename key prefixes of the source
    # ({"encoder.": "trunk."}; a prefix mapped to "-" drops those keys), e.g. a pre-trained trunk into a new head
    find_unused_parameters: bool = False  # DDP option for models with parameters unused in some steps
    dist_timeout_min: int = 60  # collective timeout in minutes (rank 0 evaluates while the others wait)
    tensorboard: bool = True  # also write TensorBoard event files under out_dir/logs/tb
    progress: bool = True  # tqdm progress bar on rank 0


@dataclass
class RunConfig:
    """A complete training/evaluation run."""

    task_name: str  # registered task name (YAML: task.name)
    task: Any  # the task's config dataclass (registered with the task)
    optim: OptimConfig = field(default_factory=OptimConfig)  # main optimizer
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)  # main optimizer's schedule
    extra_optimizers: dict[str, ExtraOptimizerConfig] = field(
        default_factory=dict
    )  # by name ("main" is taken)
    phases: list[PhaseConfig] = field(default_factory=list)  # named phases in order ([]: one phase "train")
    train: TrainConfig = field(default_factory=TrainConfig)  # loop settings
    out_dir: str = "runs/default"  # run directory


def _build_run(data: dict[str, Any], sources: Sources) -> RunConfig:
    for name in data:
        if name not in SECTION_ORDER:
            fail(sources, (str(name),), f"unknown key (known sections: {', '.join(SECTION_ORDER)})")
    task_data = data.get("task")
    if not isinstance(task_data, dict) or not isinstance(task_data.get("name"), str):
        fail(sources, ("task", "name"), "missing: every run config names its task (task: {name: ...})")
    task_fields = {k: v for k, v in task_data.items() if k != "name"}
    try:
        entry = get_task(task_data["name"])
    except KeyError as err:
        fail(sources, ("task", "name"), str(err.args[0]))
    hints = typing.get_type_hints(RunConfig)
    sections = {
        name: convert(hints[name], data[name], (name,), sources)
        for name in ("optim", "schedule", "extra_optimizers", "phases", "train", "out_dir")
        if name in data
    }
    if "out_dir" in sections:
        sections["out_dir"] = str(Path(sections["out_dir"]).expanduser().absolute()) if sections["out_dir"] else ""
    task_cfg = build_checked(entry.config_cls, task_fields, ("task",), sources)
    cfg = RunConfig(task_name=entry.name, task=task_cfg, **sections)
    validate(cfg, sources)
    return cfg


def validate(cfg: RunConfig, sources: Sources | None = None) -> None:
    """Cross-field checks that single fields cannot express."""
    src = sources or Sources("<config>")
    t = cfg.train
    if t.max_steps <= 0 and t.epochs <= 0:
        fail(src, ("train", "max_steps"), "set train.max_steps and/or train.epochs to a positive number")
    for name in ("batch_size", "grad_accum", "log_every", "checkpoint_every"):
        if getattr(t, name) < 1:
            fail(src, ("train", name), f"must be >= 1, got {getattr(t, name)}")
    if t.batch_size % t.grad_accum:
        fail(src, ("train", "batch_size"), f"{t.batch_size} is not divisible by grad_accum={t.grad_accum}")
    if "main" in cfg.extra_optimizers:
        fail(src, ("extra_optimizers", "main"), "the name 'main' is reserved for the `optim` section")
    if t.best_split and t.best_split not in t.eval_splits:
        fail(src, ("train", "best_split"), f"{t.best_split!r} is not one of train.eval_splits {t.eval_splits}")
    if len(set(t.eval_splits)) != len(t.eval_splits):
        fail(src, ("train", "eval_splits"), f"a split is listed twice: {t.eval_splits}")
    _validate_phases(cfg, src)
    if not cfg.out_dir:
        fail(src, ("out_dir",), "must not be empty")
    try:
        entry = get_task(cfg.task_name)
    except KeyError as err:
        fail(src, ("task", "name"), str(err.args[0]))
    if not isinstance(cfg.task, entry.config_cls):
        fail(
            src,
            ("task",),
            f"task {cfg.task_name!r} takes a {entry.config_cls.__name__}, got {type(cfg.task).__name__}",
        )


def _validate_phases(cfg: RunConfig, src: Sources) -> None:
    names = [p.name for p in cfg.phases]
    if len(set(names)) != len(names):
        fail(src, ("phases",), f"phase names must be unique, got {names}")
    for i, phase in enumerate(cfg.phases):
        key = ("phases", str(i))
        if (phase.start_epoch >= 0) == (phase.start_step >= 0):
            fail(src, key, f"phase {phase.name!r}: set exactly one of start_epoch and start_step")
        if i == 0 and max(phase.start_epoch, phase.start_step) != 0:
            fail(src, key, f"the first phase ({phase.name!r}) must start at epoch 0 / step 0")
    schedules = {"main": cfg.schedule, **{n: e.schedule for n, e in cfg.extra_optimizers.items()}}
    for name, sched in schedules.items():
        where = ("schedule",) if name == "main" else ("extra_optimizers", name, "schedule")
        if sched.every < 1 or not 0 <= sched.offset < sched.every:
            fail(src, where, f"need every >= 1 and 0 <= offset < every, got every={sched.every}, "
                  f"offset={sched.offset}")
        unknown = sorted(set(sched.phases) - set(names or ["train"]))
        if unknown:
            fail(src, where + ("phases",), f"unknown phase(s) {unknown}; phases: {names or ['train']}")


def config_from_dict(
    data: dict[str, Any], overrides: list[str] | None = None, source: str = "<dict>"
) -> RunConfig:
    """Builds a RunConfig from an in-memory mapping (same rules as a file; `source` names it in errors)."""
    sources = Sources(source)
    sources.record(data, (), source)
    return _build_run(apply_overrides(data, list(overrides or []), sources), sources)


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Reads a YAML run config (with its `includes`), applies `key.sub=value` overrides and checks it all."""
    sources = Sources(str(Path(path).resolve()))
    data = read_yaml(Path(path), sources)
    return _build_run(apply_overrides(data, list(overrides or []), sources), sources)


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """The resolved config as plain YAML-able data, in the file layout (task.name inside `task`)."""
    out: dict[str, Any] = {"task": {"name": cfg.task_name, **plain_data(cfg.task)}}
    for name in SECTION_ORDER[1:]:
        out[name] = plain_data(getattr(cfg, name))
    return out


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Writes the resolved config as YAML; `load_config` on the file gives `cfg` back."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
