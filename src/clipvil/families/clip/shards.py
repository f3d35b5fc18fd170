"""WebDataset tar shards as an *indexed* corpus for CLIP-ViL_p pre-training.

The engine samples by index (resumable, DDP-exact batch samplers); a streaming `IterableDataset`
(`clipvil.data.shards.ImageTextShards`) does not fit it. A tar file, though, stores each member's bytes at a
fixed offset: one sequential pass over the shards (rank 0, once; cached in the run directory as JSON) records
every sample's key, caption, image member (offset, size) and image size, after which any sample is one
seek + read away. So shards get the same samplers, orientation buckets, resume and DDP guarantees as image
folders. Sample layout as webdataset's: members ``<key>.<ext>`` grouped by key, the image one of
`clipvil.data.shards.IMAGE_EXTS` and the caption ``<key>.txt``. (Shards on a store without random access —
object storage, streamed URLs — would need the streaming reader and a step-capped loop instead.)
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from clipvil.common.atomic import atomic_write_json
from clipvil.data.shards import IMAGE_EXTS, TEXT_EXT, TarMember, expand_shards
from clipvil.engine.registry import RunContext

_KEY_EXT = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # webdataset's base_plus_ext: key up to the first dot


@dataclass(slots=True)
class ShardSentence:
    """A caption as the pre-training items read it (the fields of `LxmertSentence` they use)."""

    uid: str  # "<shard index>/<key>"
    image_id: str  # the same: one image per sample
    sentence: str
    labels: None = None  # captions carry no QA label


@dataclass
class ShardPairs:
    """The samples of a set of shards, in shard then tar order."""

    sentences: list[ShardSentence]
    paths: list[TarMember]
    sizes: list[tuple[int, int]]  # (width, height) of each image
    classes: list[int | None] = field(default_factory=list)  # the `.cls` class index of each sample, if any


def index_shard(path: Path) -> list[dict]:
    """[{key, caption, offset, size, width, height[, cls]}] of one shard (errors name shard and sample)."""
    samples: dict[str, dict] = {}
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                match = _KEY_EXT.match(member.name)
                if not member.isfile() or match is None:
                    continue
                key, ext = match.group(1), match.group(2).lower()
                entry = samples.setdefault(key, {"key": key})
                if ext == "cls":  # webdataset's class-index convention
                    entry["cls"] = int(tar.extractfile(member).read().decode("ascii").strip())  # type: ignore[union-attr]
                elif ext == TEXT_EXT:
                    entry["caption"] = tar.extractfile(member).read().decode("utf-8").strip()  # type: ignore[union-attr]
                elif ext in IMAGE_EXTS and "offset" not in entry:
                    with Image.open(tar.extractfile(member)) as img:  # type: ignore[arg-type]
                        entry.update(offset=member.offset_data, size=member.size, width=img.width, height=img.height)
    except (tarfile.TarError, OSError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"{path}: cannot index the tar shard ({type(err).__name__}: {err})") from None
    for key, entry in samples.items():
        if "offset" not in entry or not entry.get("caption"):
            raise ValueError(f"{path}: sample {key!r}: needs an image (.{', .'.join(IMAGE_EXTS)}) and a non-empty "
                             f".{TEXT_EXT} caption")
    return list(samples.values())


def read_shard_pairs(spec: str, cache_dir: Path, ctx: RunContext) -> ShardPairs:
    """The indexed samples of the shards `spec` names (brace pattern or one path); index cached in
    `cache_dir`/shard_index_<digest>.json, made once by rank 0."""
    shards = expand_shards(spec)
    missing = [s for s in shards if not s.is_file()]
    if missing:
        raise FileNotFoundError(f"task.shard_splits: shard not found: {missing[0]} ({len(missing)} missing)")
    digest = hashlib.sha1("\n".join(str(s.resolve()) for s in shards).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"shard_index_{digest}.json"
    ctx.prepare_once(cache, lambda p: atomic_write_json(p, [index_shard(s) for s in shards]))
    index = json.loads(cache.read_text())
    out = ShardPairs([], [], [])
    for k, (shard, entries) in enumerate(zip(shards, index)):
        for e in entries:
            uid = f"{k}/{e['key']}"
            out.sentences.append(ShardSentence(uid, uid, e["caption"]))
            out.paths.append(TarMember(str(shard), int(e["offset"]), int(e["size"]), e["key"]))
            out.sizes.append((int(e["width"]), int(e["height"])))
            out.classes.append(int(e["cls"]) if "cls" in e else None)
    return out


__all__ = ["ShardPairs", "ShardSentence", "TarMember", "index_shard", "read_shard_pairs"]
