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

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from clipvil.tasks.registry import get_task

SECTION_ORDER = ("task", "optim", "schedule", "extra_optimizers", "phases", "train", "out_dir")


class ConfigError(ValueError):
    """A config file or override that does not match the config dataclasses."""


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

    name: Literal["step", "linear", "noam"] = "step"  # step: warm-up, then x`decay` at each milestone
    # (Pythia, MCAN); linear: warm-up, then linear decay to 0 at the last update (BERT/LXMERT);
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


class _Sources:
    """Remembers which file (or override) set each dotted key, to name it in errors."""

    def __init__(self, default: str) -> None:
        self.default = default
        self.by_key: dict[tuple[str, ...], str] = {}

    def record(self, data: Any, prefix: tuple[str, ...], source: str) -> None:
        self.by_key[prefix] = source
        if isinstance(data, dict):
            for key, value in data.items():
                self.record(value, prefix + (str(key),), source)

    def of(self, key: tuple[str, ...]) -> str:
        for end in range(len(key), 0, -1):
            if key[:end] in self.by_key:
                return self.by_key[key[:end]]
        return self.default


def _dotted(key: tuple[str, ...]) -> str:
    return ".".join(key) if key else "<top level>"


def _fail(sources: _Sources, key: tuple[str, ...], message: str) -> typing.NoReturn:
    raise ConfigError(f"{sources.of(key)}: {_dotted(key)}: {message}")


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path, sources: _Sources, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Reads a YAML mapping and merges its `includes` (relative to the file) underneath it."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: includes form a cycle: {' -> '.join(str(p) for p in seen + (path,))}")
    if not path.is_file():
        where = f" (included from {seen[-1]})" if seen else ""
        raise FileNotFoundError(f"config file not found: {path}{where}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping, got {type(data).__name__}")
    includes = data.pop("includes", [])
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise ConfigError(f"{path}: includes: expected a list of file paths, got {includes!r}")
    merged: dict[str, Any] = {}
    for include in includes:
        merged = _deep_merge(merged, _read_yaml(path.parent / include, sources, seen + (path,)))
    sources.record(data, (), str(path))
    return _deep_merge(merged, data)


def apply_overrides(
    data: dict[str, Any], overrides: list[str], sources: _Sources | None = None
) -> dict[str, Any]:
    """Applies `key.sub=value` overrides (values parsed as YAML scalars/flow lists) to a raw config dict."""
    data = _deep_merge({}, data)
    for item in overrides:
        key_text, sep, value_text = item.partition("=")
        key = tuple(key_text.strip().split("."))
        if not sep or not all(key):
            raise ConfigError(f"override {item!r}: expected key.sub=value")
        try:
            value = yaml.safe_load(value_text)
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {err}") from err
        node = data
        for depth, part in enumerate(key[:-1]):
            if part not in node and sources is not None:
                sources.record({}, key[: depth + 1], f"override {item!r}")  # a section the override creates
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {_dotted(key[: depth + 1])} is not a section")
            node = child
        node[key[-1]] = value
        if sources is not None:
            sources.record(value, key, f"override {item!r}")
    return data


def _convert(tp: Any, value: Any, key: tuple[str, ...], sources: _Sources) -> Any:
    """Checks `value` against the annotation `tp` and converts it (lists to tuples, numbers to float...)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key, sources)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        arms = [a for a in args if a is not type(None)]
        if len(arms) != 1:
            raise TypeError(f"{_dotted(key)}: unions other than `X | None` are not supported in configs")
        return _convert(arms[0], value, key, sources)
    if origin is Literal:
        if value not in args:
            _fail(sources, key, f"must be one of {list(args)}, got {value!r}")
        return value
    if origin is list and isinstance(value, str | int | float | Path) and not isinstance(value, bool):
        value = [value]  # a single value where a list is expected: a list of one
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            _fail(sources, key, f"expected a list, got {value!r}")
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                _fail(sources, key, f"expected {len(args)} values, got {len(value)}: {value!r}")
            return tuple(
                _convert(a, v, key + (str(i),), sources) for i, (a, v) in enumerate(zip(args, value))
            )
        items = [_convert(args[0], v, key + (str(i),), sources) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            _fail(sources, key, f"expected a mapping, got {value!r}")
        return {str(k): _convert(args[1], v, key + (str(k),), sources) for k, v in value.items()}
    return _convert_scalar(tp, value, key, sources)


def _convert_scalar(tp: Any, value: Any, key: tuple[str, ...], sources: _Sources) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            _fail(sources, key, f"expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(sources, key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        # PyYAML reads `1e-4` (no dot) as a string: accept any text that float() parses.
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            _fail(sources, key, f"expected a number, got {value!r}")
        try:
            return float(value)
        except ValueError:
            _fail(sources, key, f"expected a number, got {value!r}")
    if tp is str:
        if not isinstance(value, str):
            _fail(sources, key, f"expected a string, got {value!r} (quote it in YAML)")
        return value
    if tp is Path:
        if not isinstance(value, str | Path) or not str(value):
            _fail(sources, key, f"expected a path, got {value!r}")
        return Path(value).expanduser().absolute()
    raise TypeError(f"{_dotted(key)}: config fields of type {tp!r} are not supported")


def _build(cls: type, data: Any, key: tuple[str, ...], sources: _Sources) -> Any:
    """Builds dataclass `cls` from a mapping, failing on unknown keys and bad values."""
    if not isinstance(data, dict):
        _fail(sources, key, f"expected a mapping of {cls.__name__} fields, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    for name in data:
        if name not in known:
            _fail(
                sources, key + (str(name),), f"unknown key (known keys of {cls.__name__}: {', '.join(known)})"
            )
    defaults = {f.name: f.default_factory() for f in dataclasses.fields(cls)  # type: ignore[misc]
                if f.default_factory is not dataclasses.MISSING}
    values = {}
    for name, value in data.items():
        if isinstance(value, dict) and isinstance(defaults.get(name), dict) and defaults[name]:
            value = {**defaults[name], **value}  # mappings with defaults merge key by key
        values[name] = _convert(hints[name], value, key + (name,), sources)
    return cls(**values)


def build_dataclass(cls: type, data: dict[str, Any], source: str = "<dict>") -> Any:
    """Builds any config dataclass (e.g. one section) from a mapping with the same checks as a file."""
    return _build(cls, data, (), _Sources(source))


def _build_run(data: dict[str, Any], sources: _Sources) -> RunConfig:
    for name in data:
        if name not in SECTION_ORDER:
            _fail(sources, (str(name),), f"unknown key (known sections: {', '.join(SECTION_ORDER)})")
    task_data = data.get("task")
    if not isinstance(task_data, dict) or not isinstance(task_data.get("name"), str):
        _fail(sources, ("task", "name"), "missing: every run config names its task (task: {name: ...})")
    task_fields = {k: v for k, v in task_data.items() if k != "name"}
    try:
        entry = get_task(task_data["name"])
    except KeyError as err:
        _fail(sources, ("task", "name"), str(err.args[0]))
    hints = typing.get_type_hints(RunConfig)
    sections = {
        name: _convert(hints[name], data[name], (name,), sources)
        for name in ("optim", "schedule", "extra_optimizers", "phases", "train", "out_dir")
        if name in data
    }
    if "out_dir" in sections:
        sections["out_dir"] = str(Path(sections["out_dir"]).expanduser().absolute()) if sections["out_dir"] else ""
    task_cfg = _build(entry.config_cls, task_fields, ("task",), sources)
    cfg = RunConfig(task_name=entry.name, task=task_cfg, **sections)
    validate(cfg, sources)
    return cfg


def validate(cfg: RunConfig, sources: _Sources | None = None) -> None:
    """Cross-field checks that single fields cannot express."""
    src = sources or _Sources("<config>")
    t = cfg.train
    if t.max_steps <= 0 and t.epochs <= 0:
        _fail(src, ("train", "max_steps"), "set train.max_steps and/or train.epochs to a positive number")
    for name in ("batch_size", "grad_accum", "log_every", "checkpoint_every"):
        if getattr(t, name) < 1:
            _fail(src, ("train", name), f"must be >= 1, got {getattr(t, name)}")
    if t.batch_size % t.grad_accum:
        _fail(src, ("train", "batch_size"), f"{t.batch_size} is not divisible by grad_accum={t.grad_accum}")
    if "main" in cfg.extra_optimizers:
        _fail(src, ("extra_optimizers", "main"), "the name 'main' is reserved for the `optim` section")
    if t.best_split and t.best_split not in t.eval_splits:
        _fail(src, ("train", "best_split"), f"{t.best_split!r} is not one of train.eval_splits {t.eval_splits}")
    if len(set(t.eval_splits)) != len(t.eval_splits):
        _fail(src, ("train", "eval_splits"), f"a split is listed twice: {t.eval_splits}")
    _validate_phases(cfg, src)
    if not cfg.out_dir:
        _fail(src, ("out_dir",), "must not be empty")
    try:
        entry = get_task(cfg.task_name)
    except KeyError as err:
        _fail(src, ("task", "name"), str(err.args[0]))
    if not isinstance(cfg.task, entry.config_cls):
        _fail(
            src,
            ("task",),
            f"task {cfg.task_name!r} takes a {entry.config_cls.__name__}, got {type(cfg.task).__name__}",
        )


def _validate_phases(cfg: RunConfig, src: _Sources) -> None:
    names = [p.name for p in cfg.phases]
    if len(set(names)) != len(names):
        _fail(src, ("phases",), f"phase names must be unique, got {names}")
    for i, phase in enumerate(cfg.phases):
        key = ("phases", str(i))
        if (phase.start_epoch >= 0) == (phase.start_step >= 0):
            _fail(src, key, f"phase {phase.name!r}: set exactly one of start_epoch and start_step")
        if i == 0 and max(phase.start_epoch, phase.start_step) != 0:
            _fail(src, key, f"the first phase ({phase.name!r}) must start at epoch 0 / step 0")
    schedules = {"main": cfg.schedule, **{n: e.schedule for n, e in cfg.extra_optimizers.items()}}
    for name, sched in schedules.items():
        where = ("schedule",) if name == "main" else ("extra_optimizers", name, "schedule")
        if sched.every < 1 or not 0 <= sched.offset < sched.every:
            _fail(src, where, f"need every >= 1 and 0 <= offset < every, got every={sched.every}, "
                  f"offset={sched.offset}")
        unknown = sorted(set(sched.phases) - set(names or ["train"]))
        if unknown:
            _fail(src, where + ("phases",), f"unknown phase(s) {unknown}; phases: {names or ['train']}")


def config_from_dict(
    data: dict[str, Any], overrides: list[str] | None = None, source: str = "<dict>"
) -> RunConfig:
    """Builds a RunConfig from an in-memory mapping (same rules as a file; `source` names it in errors)."""
    sources = _Sources(source)
    sources.record(data, (), source)
    return _build_run(apply_overrides(data, list(overrides or []), sources), sources)


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Reads a YAML run config (with its `includes`), applies `key.sub=value` overrides and checks it all."""
    sources = _Sources(str(Path(path).resolve()))
    data = _read_yaml(Path(path), sources)
    return _build_run(apply_overrides(data, list(overrides or []), sources), sources)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """The resolved config as plain YAML-able data, in the file layout (task.name inside `task`)."""
    out: dict[str, Any] = {"task": {"name": cfg.task_name, **_plain(cfg.task)}}
    for name in SECTION_ORDER[1:]:
        out[name] = _plain(getattr(cfg, name))
    return out


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Writes the resolved config as YAML; `load_config` on the file gives `cfg` back."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
