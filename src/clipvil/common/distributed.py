"""torch.distributed set-up from torchrun's environment, and the few collectives the loop needs.

Launch with `torchrun --nproc_per_node=N ...` (one machine) or add `--nnodes/--node_rank/--rdzv-endpoint`
(several machines). torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT; without
them (WORLD_SIZE unset or 1) everything below degrades to single-process no-ops.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run."""

    rank: int  # global rank
    local_rank: int  # rank on this machine (picks the GPU)
    world_size: int  # number of processes
    device: torch.device  # where this rank computes
    owns_group: bool  # True when init_distributed created the process group (and must destroy it)

    @property
    def is_main(self) -> bool:
        """Rank 0: writes checkpoints, logs and evaluation results."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def pick_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    """cpu, or the CUDA device of this local rank (`auto`: CUDA when available)."""
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA device is available (use auto or cpu)")
    if preference == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    device = torch.device("cuda", local_rank % torch.cuda.device_count())
    torch.cuda.set_device(device)
    return device


def init_distributed(device_preference: str = "auto", timeout_min: int = 60) -> DistInfo:
    """Reads torchrun's env vars, picks the device and (for WORLD_SIZE > 1) joins the process group:
    nccl on CUDA, gloo on CPU. A process group that already exists is reused, not re-created."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_preference, local_rank)
    owns = False
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_min))
        owns = True
    if dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return DistInfo(rank, local_rank, world_size, device, owns)


def shutdown(info: DistInfo) -> None:
    """Destroys the process group if `init_distributed` created it."""
    if info.owns_group and dist.is_initialized():
        # every rank reaches the end before any tears its connections down: a rank destroying its group while
        # another still talks to it can abort ("terminate called without an active exception") in gloo
        dist.barrier()
        dist.destroy_process_group()


def wrap_model(model: nn.Module, info: DistInfo, find_unused_parameters: bool = False) -> nn.Module:
    """DDP around `model` in a distributed run (averages gradients over ranks), else `model` itself."""
    if not info.enabled:
        return model
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(
        model, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )


def all_reduce_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Element-wise mean of `values` over ranks (a copy; the input is left as is)."""
    out = values.detach().clone()
    if info.enabled:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= info.world_size
    return out


def all_gather_object(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's `obj`, in rank order (a one-element list in a single process)."""
    if not info.enabled:
        return [obj]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's `obj` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    """Waits for every rank (no-op in a single process)."""
    if info.enabled:
        dist.barrier()


def current() -> DistInfo:
    """This process's place in an already initialised run (rank 0 of 1 when no process group exists)."""
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), dist.get_world_size(),
                        torch.device("cpu"), False)
    return DistInfo(0, 0, 1, torch.device("cpu"), False)


def prepare_once(path: str | os.PathLike, make: Any, *, rank: int | None = None) -> None:
    """Makes a file that every rank reads, exactly once: rank 0 calls `make(path)` when `path` does not exist
    yet (`make` must write atomically, e.g. with clipvil.common.atomic), then every rank waits at a barrier,
    so no rank can read a half-written file. A no-op barrier in a single process."""
    info = current()
    rank = info.rank if rank is None else rank
    if rank == 0 and not Path(path).exists():
        make(Path(path))
    barrier(info)
