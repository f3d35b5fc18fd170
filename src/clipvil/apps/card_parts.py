"""What a task family tells `clipvil card` about one of its recipes, and the registry of those describers.

A describer turns a recipe (its RunConfig, no data, no feature store) into `CardParts`: the model the recipe
trains (materialised on the CPU with small random values), one loss function per training phase over random
batches at the recipe's shapes, the dataset sizes it expects, and every assumption made on the way.
`clipvil.apps.card` measures the phases and assembles the card; a task family joins with
`register_card("task", describe)` in its own module (`card_vqa`, `card_caption`, ...).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from clipvil.apps.card_measure import LossFn
from clipvil.encoders import build_encoder, get_preset, tower_family
from clipvil.engine.config import RunConfig

# Dense (no 2:4 sparsity) tensor-core peaks in FLOP/s, bf16 where the chip has it, from NVIDIA's datasheets:
# A100 SXM 312 TFLOPS bf16 (A100 datasheet: "BFLOAT16 Tensor Core 312 | 624 TF*", * = with sparsity);
# H100 SXM and H200 (SXM) 989 TFLOPS bf16 (H100 / H200 datasheets list 1,979 TF with sparsity: half dense);
# V100 SXM2 125 TFLOPS fp16 tensor (V100 datasheet "Tensor Performance"; Volta has no bf16).
KNOWN_GPUS: dict[str, float] = {"A100": 312e12, "H100": 989e12, "H200": 989e12, "V100": 125e12}
FP16_ONLY = frozenset({"V100"})  # known GPUs whose peak is fp16 (no bf16 tensor cores)


@dataclass(frozen=True)
class Gpu:
    """The accelerator a run's GPU-hours are estimated for."""

    name: str = "A100"
    peak_flops: float = 312e12  # dense tensor-core peak, FLOP/s (KNOWN_GPUS: the NVIDIA A100 datasheet's bf16)
    utilisation: float = 0.40  # assumed fraction of the peak a training step reaches
    precision: str = "bf16"  # the precision of the peak ("bf16", "fp16"; "stated" for a peak given by hand)


def known_gpu(name: str, tflops: float | None = None, utilisation: float = 0.40) -> Gpu:
    """The Gpu named `name` (case-insensitive among KNOWN_GPUS); `tflops` (TFLOP/s) given overrides the table's
    peak, and then any name is accepted. A ValueError naming the known GPUs for an unknown name without it."""
    if not 0 < utilisation <= 1:
        raise ValueError(f"card: utilisation must be in (0, 1], got {utilisation}")
    if tflops is not None:
        if not tflops > 0:
            raise ValueError(f"card: the GPU's peak must be > 0 TFLOP/s, got {tflops}")
        return Gpu(name, tflops * 1e12, utilisation, "stated")
    match = next((k for k in KNOWN_GPUS if k.lower() == name.lower()), None)
    if match is None:
        raise ValueError(f"--gpu {name}: peak not known to the card (known: {', '.join(KNOWN_GPUS)}); "
                         "give its dense peak with --gpu-tflops")
    return Gpu(match, KNOWN_GPUS[match], utilisation, "fp16" if match in FP16_ONLY else "bf16")


@dataclass(frozen=True)
class CardOptions:
    """How a card is measured."""

    gpu: Gpu = field(default_factory=Gpu)
    question_vocab: int = 20_000  # assumed question-word vocabulary (built from the data at training time)
    answers: int = 3129  # assumed answer count when the recipe builds its vocabulary from the data
    batch: int = 1  # batch of the measured steps (results are per sample)
    max_updates: int = 3  # timed updates at most ...
    budget_s: float = 4.0  # ... while under this many seconds (at least one)
    device: str = "cpu"  # where the seconds are measured (cpu, cuda, cuda:1 ...)


@dataclass
class CardPhase:
    """One training phase of a recipe (XE then SCST, IL + RL, ...) as a measurable step."""

    name: str  # e.g. "train", "xe", "scst"
    loss_fn: LossFn  # batch size -> scalar loss of a fresh random batch at the recipe's shapes
    share: float = 1.0  # fraction of the run's updates spent in this phase (the shares sum to 1)
    note: str = ""  # what the step stands for (e.g. "5 sampled + 1 greedy caption per image")
    repeat: float = 1.0  # evaluation-only recipes: runs of this step per sample (e.g. 6,258 candidate texts a
    # question); training phases leave it at 1


@dataclass
class CardParts:
    """A recipe as the card sees it (see the module docstring)."""

    model: nn.Module  # what the recipe trains (materialised; the tower included when it is trained)
    phases: list[CardPhase]  # at least one
    facts: dict[str, Any]  # printed as they are: {"model": "mcan/small", "encoder": "RN50", "input": "...", ...}
    datasets: dict[str, Any]  # {"source": "...", "<split>": {"<unit>": n, ...}, ...}
    train_samples: int | None  # training samples per epoch (None: unknown) — the updates of epoch-based runs
    input_bytes: int  # bytes read per training sample (cached features, or image pixels)
    notes: list[str] = field(default_factory=list)  # every assumption made
    embedding_params: int = 0  # parameters of a word embedding whose size is an assumption (0: none)
    frozen_params: int = 0  # parameters the recipe keeps frozen (e.g. a tower it does not train)
    evaluation_only: bool = False  # no training: the phases are forward passes (loss_fn's value is not used)
    eval_samples: int | None = None  # evaluation-only: samples of the evaluated set (None: unknown)
    measure_key: Any = None  # what the phases' costs depend on besides the model's structure and the
    # optimizers (input shapes, ...), so recipes that differ only in names share a measurement; None: the facts


Describer = Callable[[RunConfig, CardOptions], CardParts]
_DESCRIBERS: dict[str, Describer] = {}


def register_card(task: str, describe: Describer) -> None:
    """Makes `clipvil card` describe recipes of `task` with `describe`."""
    if task in _DESCRIBERS:
        raise ValueError(f"card: task {task!r} already has a describer")
    _DESCRIBERS[task] = describe


def describer(task: str) -> Describer:
    """The describer of `task`; a ValueError naming the known tasks otherwise."""
    if task not in _DESCRIBERS:
        raise ValueError(f"card: task {task!r} has no card yet; cards cover {', '.join(sorted(_DESCRIBERS))}")
    return _DESCRIBERS[task]


def card_tasks() -> list[str]:
    return sorted(_DESCRIBERS)


def materialise(model: nn.Module) -> nn.Module:
    """A meta-device model on the CPU with small random values (integer buffers zero)."""
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            if tensor.is_floating_point():
                tensor.uniform_(-0.05, 0.05)
            else:
                tensor.zero_()
    return model


@contextmanager
def no_random_weights_warning() -> Iterator[None]:
    """Silences the encoder registry's "encoder X has RANDOM weights" warning while a card builds a tower only
    to read its shapes (no weights are needed); errors still show."""
    logger = logging.getLogger("clipvil.encoders.registry")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def grid_shape(encoder: str, preset: str) -> tuple[tuple[int, int], int, str]:
    """((h, w), channels, how) of the grids `encoder` gives at `preset`, the tower built on the meta device."""
    size = get_preset(preset).size
    with no_random_weights_warning(), torch.device("meta"):
        tower = build_encoder(encoder)
        if size is None:
            size = (tower.native_size, tower.native_size)
        if tower_family(encoder) == "clip-vit":  # patch conv, kernel = stride: floor division
            hw = (size[0] // tower.stride, size[1] // tower.stride)
        else:
            hw = tower(torch.empty(1, 3, *size)).hw
    return hw, tower.dim, f"{encoder} at the {preset!r} preset ({size[0]}x{size[1]} input, stride {tower.stride})"


def embedding_params(model: nn.Module, vocab: int) -> int:
    """Parameters of the model's embeddings with `vocab` rows (the ones sized by an assumed vocabulary)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Embedding) and m.num_embeddings == vocab)


__all__ = ["FP16_ONLY", "KNOWN_GPUS", "CardOptions", "CardParts", "CardPhase", "Describer", "Gpu", "card_tasks",
           "describer",
           "embedding_params", "grid_shape", "known_gpu", "materialise", "no_random_weights_warning",
           "register_card"]
