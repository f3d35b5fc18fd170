"""Task registry: a task name -> (its config dataclass, a factory building the Task).

A task registers itself when its module is imported:

    register_task("vqa", VQAConfig, VQATask, predictor=VqaPredictor.from_checkpoint)   # families/vqa/task.py

The optional `predictor(config, artifacts, device) -> predictor object` builds what `clipvil predict` needs
from a checkpoint alone (its config and artifacts), without datasets or a feature store.

`get_task(name)` loads the families on the first miss (`load_families`: every package under
`clipvil/families/`, each registering its tasks and models), so a family needs no other wiring. Tasks
defined elsewhere (tests, user code) register themselves the same way; their module must be imported before
the config is loaded.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from clipvil.common.distributed import prepare_once
from clipvil.engine.task import TaskModule


@dataclass(frozen=True)
class RunContext:
    """What a task factory may need to know about the run it is built for."""

    out_dir: Path  # the run directory (a task may cache derived files there; rank 0 writes)
    device: torch.device  # where the engine puts the model and the batches
    rank: int = 0  # this process's rank in the distributed run
    world_size: int = 1  # number of processes

    @property
    def is_main(self) -> bool:
        """True on the process that writes files (rank 0)."""
        return self.rank == 0

    def prepare_once(self, path: Path, make: Callable[[Path], None]) -> Path:
        """A file every rank reads (a vocabulary, a cache): rank 0 makes it once with `make(path)` (which must
        write atomically), every rank waits at a barrier, then all may read it. Returns `path`."""
        prepare_once(path, make, rank=self.rank)
        return path


TaskFactory = Callable[[Any, RunContext], TaskModule]
PredictorFactory = Callable[[Any, dict[str, Any], torch.device], Any]


@dataclass(frozen=True)
class TaskEntry:
    """A registered task: its name, config dataclass and factory(config, context) -> Task."""

    name: str
    config_cls: type
    factory: TaskFactory
    predictor: PredictorFactory | None = None  # builds an inference-only predictor from a checkpoint


_TASKS: dict[str, TaskEntry] = {}


def register_task(
    name: str, config_cls: type, factory: TaskFactory, predictor: PredictorFactory | None = None
) -> None:
    """Registers a task. Registering the same (config_cls, factory) again is a no-op (module reloads);
    another pair under a taken name is an error. The config dataclass may not have a field `name`
    (the YAML key `task.name` selects the task)."""
    if not name.isidentifier():
        raise ValueError(f"task name must be a Python identifier, got {name!r}")
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"task {name!r}: config_cls must be a dataclass, got {config_cls!r}")
    if "name" in {f.name for f in dataclasses.fields(config_cls)}:
        raise ValueError(f"task {name!r}: {config_cls.__name__} has a field 'name', reserved for task.name")
    entry = TaskEntry(name, config_cls, factory, predictor)
    known = _TASKS.get(name)
    if known is not None and (known.config_cls, known.factory) != (config_cls, factory):
        raise ValueError(f"task {name!r} is already registered by {known.factory!r}")
    _TASKS[name] = entry


FAMILIES_PACKAGE = "clipvil.families"  # found by name: the families sit above the engine and register into it
_loaded_families: list[str] = []


def load_families() -> list[str]:
    """Imports every family package under `clipvil.families` once (each registers its tasks and models when
    imported); returns their names. An import error of a family is a bug and propagates."""
    if not _loaded_families:
        package = importlib.import_module(FAMILIES_PACKAGE)
        names = sorted(info.name for info in pkgutil.iter_modules(package.__path__) if info.ispkg)
        for name in names:
            importlib.import_module(f"{FAMILIES_PACKAGE}.{name}")
        _loaded_families.extend(names)
    return list(_loaded_families)


def get_task(name: str) -> TaskEntry:
    """The entry of a registered task, loading the families first if it is not registered yet.

    Raises KeyError naming the known tasks when there is none."""
    if name not in _TASKS:
        load_families()
    if name not in _TASKS:
        raise KeyError(f"unknown task {name!r}; registered tasks: {', '.join(sorted(_TASKS)) or '(none)'}")
    return _TASKS[name]


def registered_tasks() -> list[str]:
    """Names of the tasks registered so far (families not yet loaded are not listed)."""
    return sorted(_TASKS)
