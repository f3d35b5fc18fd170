"""Image–caption pairs from WebDataset tar shards (``{key}.jpg|png + {key}.txt``, as open_clip users keep
them), read with the ``webdataset`` package, split over ranks and loader workers, resumable by shard.

Contract (what a trainer may rely on):

- **Order.** The shards of an epoch are taken in the order given — or, with `seed`, in the permutation
  ``random.Random(seed + epoch)`` makes of them (`set_epoch`). Within a shard, samples come in tar order.
  Shards are named everywhere by their index in the list *as given* (``shard``), whatever the epoch order.
- **Splitting.** Reading process ``p = rank * num_workers + worker_id`` of ``P = world_size * num_workers``
  reads the epoch order's shards ``p, p + P, p + 2P, ...``; there must be at least P shards. Processes may
  hold different sample counts (shards differ in length): under DDP cap the steps per epoch.
- **Positions.** Every sample carries ``shard`` (its shard's index), ``offset`` (its position in that shard,
  from 0) and ``last`` (True on a shard's final sample). A trainer feeds the batches it has *consumed* to a
  `ShardProgress` and saves its `state_dict` with the checkpoint.
- **Resume.** ``ImageTextShards(..., resume=progress)`` skips the shards that progress saw finished and the
  first ``done`` samples of the others: every sample of the epoch is seen exactly once across the
  interruption, whatever P was before and after. With the same P each process continues its own stream
  exactly; the DataLoader's interleaving of its workers' batches may start from another worker than an
  uninterrupted run would have.
  A single `ShardPosition` (shard, offset) works for one reading process: the shards before `shard` in the
  epoch order count as finished, and `offset` samples of `shard` as done.

A missing shard is a FileNotFoundError; a corrupt tar, a sample without an image or a caption, an empty
caption or an undecodable image are errors naming the shard file and the sample key.
"""

from __future__ import annotations

import io
import random
import tarfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import IterableDataset, get_worker_info

from clipvil.data.validate import PathLike, error
from clipvil.encoders.images import ImageDecodeError, to_rgb

IMAGE_EXTS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp")  # tried in this order within a sample
TEXT_EXT = "txt"


def expand_shards(spec: str | PathLike | Sequence[PathLike]) -> list[Path]:
    """Shard paths from a list, one path, or a brace pattern as open_clip takes them
    ("data/{00000..00031}.tar")."""
    if isinstance(spec, (str, Path)):
        from braceexpand import braceexpand  # installed with webdataset

        return [Path(s) for s in braceexpand(str(spec))]
    return [Path(s) for s in spec]


@dataclass(frozen=True)
class TarMember:
    """Where an image's bytes lie inside a tar shard."""

    shard: str  # the tar file
    offset: int  # byte offset of the member's data
    size: int  # its length in bytes
    key: str  # the sample key (for messages)

    def read_image(self) -> Image.Image:
        """The decoded RGB image; ImageDecodeError naming shard and key."""
        with open(self.shard, "rb") as f:
            f.seek(self.offset)
            data = f.read(self.size)
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                return to_rgb(img)
        except OSError as err:
            raise ImageDecodeError(f"{self.shard}: sample {self.key!r}: cannot decode the image ({err})") from None


@dataclass(frozen=True)
class ShardPosition:
    """A point in one reading process's stream: `offset` samples of shard `shard` are done."""

    shard: int  # index in the shard list as given
    offset: int  # samples of that shard already consumed


class ShardProgress:
    """What a trainer has consumed this epoch: samples done per shard, and the shards it saw finish."""

    def __init__(self) -> None:
        self.done: dict[int, int] = {}  # shard -> samples consumed (offset of the last one + 1)
        self.finished: set[int] = set()  # shards whose last sample was consumed

    def observe(self, shard: int, offset: int, last: bool) -> None:
        """Records one consumed sample."""
        self.done[shard] = max(self.done.get(shard, 0), offset + 1)
        if last:
            self.finished.add(shard)

    def update(self, batch: Mapping[str, Any]) -> None:
        """Records a consumed batch (the ``shard``, ``offset`` and ``last`` entries, tensors or lists)."""
        shards, offsets, lasts = (_as_list(batch[k]) for k in ("shard", "offset", "last"))
        for s, o, last in zip(shards, offsets, lasts, strict=True):
            self.observe(int(s), int(o), bool(last))

    def skip(self, shard: int) -> int | None:
        """Samples of `shard` to skip on resume; None when the whole shard is done."""
        return None if shard in self.finished else self.done.get(shard, 0)

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state (string keys), for the trainer's checkpoint."""
        return {"done": {str(k): v for k, v in sorted(self.done.items())}, "finished": sorted(self.finished)}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> ShardProgress:
        """The progress saved by `state_dict`."""
        progress = cls()
        progress.done = {int(k): int(v) for k, v in state["done"].items()}
        progress.finished = {int(s) for s in state["finished"]}
        return progress


def _as_list(values: Any) -> list[Any]:
    return values.tolist() if isinstance(values, torch.Tensor) else list(values)


Transform = Callable[[Image.Image], torch.Tensor]
Tokenizer = Callable[[list[str]], torch.Tensor]


class ImageTextShards(IterableDataset):
    """Iterable of dicts ``{image, text, key, shard, offset, last}`` from WebDataset tar shards.

    image: `transform(PIL RGB image)` (the PIL image itself when transform is None);
    text: `tokenizer([caption])[0]` ids [L] (the caption string when tokenizer is None).
    rank / world_size: this process's place under torch.distributed (loader workers are found by itself).
    seed: None keeps the given shard order every epoch; an int permutes it per epoch (`set_epoch`).
    resume: a `ShardProgress` (or, for one reading process, a `ShardPosition`) to continue from.
    """

    def __init__(
        self,
        shards: str | PathLike | Sequence[PathLike],
        transform: Transform | None = None,
        tokenizer: Tokenizer | None = None,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int | None = None,
        resume: ShardProgress | ShardPosition | None = None,
    ) -> None:
        self.shards = expand_shards(shards)
        if not self.shards:
            raise ValueError("ImageTextShards: no shards given")
        for s in self.shards:
            if not s.is_file():
                raise FileNotFoundError(f"{s}: shard not found")
        if not 0 <= rank < world_size:
            raise ValueError(f"ImageTextShards: rank {rank} outside world size {world_size}")
        if isinstance(resume, ShardPosition) and not 0 <= resume.shard < len(self.shards):
            raise ValueError(
                f"ImageTextShards: resume shard {resume.shard} outside 0..{len(self.shards) - 1}"
            )
        self.transform, self.tokenizer = transform, tokenizer
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.resume = resume
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch's shard order (only matters with a seed); call before iterating."""
        self.epoch = epoch

    def epoch_order(self) -> list[int]:
        """Shard indices in this epoch's reading order."""
        order = list(range(len(self.shards)))
        if self.seed is not None:
            random.Random(self.seed + self.epoch).shuffle(order)
        return order

    def assigned_shards(self, worker_id: int = 0, num_workers: int = 1) -> list[int]:
        """The shard indices that loader worker `worker_id` of this rank reads this epoch, in order."""
        n_procs = self.world_size * num_workers
        if len(self.shards) < n_procs:
            raise ValueError(
                f"ImageTextShards: {len(self.shards)} shards for {n_procs} reading processes "
                f"({self.world_size} ranks x {num_workers} loader workers); need at least one shard each"
            )
        return self.epoch_order()[self.rank * num_workers + worker_id :: n_procs]

    def _progress(self, n_procs: int) -> ShardProgress:
        if not isinstance(self.resume, ShardPosition):
            return self.resume if self.resume is not None else ShardProgress()
        if n_procs != 1:
            raise ValueError(
                f"ImageTextShards: a single ShardPosition resumes one reading process, not {n_procs}; "
                "resume with a ShardProgress"
            )
        order = self.epoch_order()
        progress = ShardProgress()
        progress.finished = set(order[: order.index(self.resume.shard)])
        progress.done = {self.resume.shard: self.resume.offset}
        return progress

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker_id, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        progress = self._progress(self.world_size * num_workers)
        for shard in self.assigned_shards(worker_id, num_workers):
            skip = progress.skip(shard)
            if skip is None:
                continue
            for offset, sample, last in _with_last(_raw_samples(self.shards[shard])):
                if offset >= skip:
                    yield self._decode(shard, offset, sample, last)

    def _decode(self, shard: int, offset: int, sample: dict[str, Any], last: bool) -> dict[str, Any]:
        path, key = self.shards[shard], sample["__key__"]
        where = f"sample {key!r}"
        ext = next((e for e in IMAGE_EXTS if e in sample), None)
        if ext is None:
            raise error(
                path, where, f"no image (expected one of .{', .'.join(IMAGE_EXTS)}; has {_files(sample)})"
            )
        if TEXT_EXT not in sample:
            raise error(path, where, f"no caption .{TEXT_EXT} (has {_files(sample)})")
        try:
            caption = sample[TEXT_EXT].decode("utf-8").strip()
        except UnicodeDecodeError:
            raise error(path, where, f"caption .{TEXT_EXT} is not UTF-8 text") from None
        if not caption:
            raise error(path, where, "empty caption")
        try:
            with Image.open(io.BytesIO(sample[ext])) as img:
                img.load()
                image = to_rgb(img)
        except (UnidentifiedImageError, OSError) as err:
            raise ImageDecodeError(f"{path}: {where}: cannot decode .{ext} ({err})") from None
        return {
            "image": self.transform(image) if self.transform is not None else image,  # [3, H, W]
            "text": self.tokenizer([caption])[0] if self.tokenizer is not None else caption,  # [L]
            "key": key,
            "shard": shard,
            "offset": offset,
            "last": last,
        }


def _files(sample: dict[str, Any]) -> list[str]:
    return sorted(k for k in sample if not k.startswith("__"))


def _raw_samples(path: Path) -> Iterator[dict[str, Any]]:
    """The samples of one shard, grouped by key with webdataset ({__key__, ext: bytes, ...}), in tar order."""
    from webdataset.tariterators import group_by_keys, tar_file_expander

    with path.open("rb") as stream:
        files = tar_file_expander([{"url": str(path), "stream": stream}])
        try:
            yield from group_by_keys(files)
        except (tarfile.TarError, ValueError) as err:  # corrupt tar; a file twice in one sample
            raise error(
                path, None, f"cannot read the tar shard ({type(err).__name__}: {err.args[0]})"
            ) from None


def _with_last(samples: Iterator[dict[str, Any]]) -> Iterator[tuple[int, dict[str, Any], bool]]:
    """(offset, sample, is the shard's final sample), one sample of look-ahead."""
    previous = None
    offset = -1
    for offset, sample in enumerate(samples):
        if previous is not None:
            yield offset - 1, previous, False
        previous = sample
    if previous is not None:
        yield offset, previous, True


__all__ = [
    "IMAGE_EXTS",
    "TEXT_EXT",
    "ImageTextShards",
    "ShardPosition",
    "ShardProgress",
    "TarMember",
    "expand_shards",
]
