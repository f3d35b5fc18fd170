"""WebDataset tar shards: samples in order, split over ranks and workers, resumable exactly once."""

from __future__ import annotations

import io
import random
import tarfile
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from clipvil.data.shards import ImageTextShards, ShardPosition, ShardProgress, expand_shards
from clipvil.data.validate import DataFormatError
from clipvil.encoders.images import ImageDecodeError


def _png(value: int, size: tuple[int, int] = (12, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (value, 255 - value, 7)).save(buf, format="PNG")
    return buf.getvalue()


def _write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _shards(tmp_path: Path, sizes: tuple[int, ...] = (3, 2, 4, 1)) -> list[Path]:
    """Shard i holds `sizes[i]` samples keyed s{i}_{j}: a .png (a .jpg for odd j) and the caption
    "shard i item j"."""
    paths = []
    for i, n in enumerate(sizes):
        members: list[tuple[str, bytes]] = []
        for j in range(n):
            key = f"s{i}_{j:03d}"
            if j % 2:
                buf = io.BytesIO()
                Image.new("RGB", (8, 8), (10 * j, 0, 0)).save(buf, format="JPEG")
                members.append((f"{key}.jpg", buf.getvalue()))
            else:
                members.append((f"{key}.png", _png(10 * i + j)))
            members.append((f"{key}.txt", f"shard {i} item {j}\n".encode()))
        paths.append(_write_tar(tmp_path / f"{i:05d}.tar", members))
    return paths


def _keys(ds: ImageTextShards, **loader: int) -> list[str]:
    if loader:
        dl = torch.utils.data.DataLoader(ds, batch_size=None, **loader)
        return [s["key"] for s in dl]
    return [s["key"] for s in ds]


def test_samples_in_shard_then_tar_order_with_positions(tmp_path: Path) -> None:
    paths = _shards(tmp_path)
    samples = list(ImageTextShards(paths))
    assert [s["key"] for s in samples][:4] == ["s0_000", "s0_001", "s0_002", "s1_000"]
    assert len(samples) == 10
    assert [(s["shard"], s["offset"], s["last"]) for s in samples[:5]] == [
        (0, 0, False),
        (0, 1, False),
        (0, 2, True),
        (1, 0, False),
        (1, 1, True),
    ]
    first = samples[0]
    assert first["text"] == "shard 0 item 0"  # stripped
    assert isinstance(first["image"], Image.Image) and first["image"].getpixel((0, 0)) == (0, 255, 7)
    assert samples[1]["image"].size == (8, 8)  # the .jpg of an odd item


def test_transform_and_tokenizer_applied(tmp_path: Path) -> None:
    paths = _shards(tmp_path, (2,))
    tok = open_clip.get_tokenizer("clipvil-rn-tiny")
    transform = open_clip.image_transform(16, is_train=False)
    sample = next(iter(ImageTextShards(paths, transform, tok)))
    assert sample["image"].shape == (3, 16, 16)
    torch.testing.assert_close(sample["image"], transform(Image.open(io.BytesIO(_png(0))).convert("RGB")))
    assert torch.equal(sample["text"], tok(["shard 0 item 0"])[0])


def test_brace_patterns_expand_like_open_clip(tmp_path: Path) -> None:
    _shards(tmp_path)
    assert expand_shards(str(tmp_path / "{00000..00002}.tar")) == [
        tmp_path / f"{i:05d}.tar" for i in range(3)
    ]
    assert len(list(ImageTextShards(str(tmp_path / "{00000..00001}.tar")))) == 5


def test_ranks_and_workers_split_shards_deterministically(tmp_path: Path) -> None:
    paths = _shards(tmp_path, (2, 2, 2, 2, 2, 2))
    r0 = ImageTextShards(paths, rank=0, world_size=2)
    r1 = ImageTextShards(paths, rank=1, world_size=2)
    assert r0.assigned_shards() == [0, 2, 4] and r1.assigned_shards() == [1, 3, 5]
    assert r1.assigned_shards(worker_id=1, num_workers=2) == [3]  # process 1*2+1 = 3 of 4
    everything = sorted(f"s{i}_{j:03d}" for i in range(6) for j in range(2))
    assert sorted(_keys(r0) + _keys(r1)) == everything
    # with 2 loader workers a rank's processes are 2r and 2r+1 of 4: rank 1 reads shards 2 and 3
    assert sorted(_keys(r1, num_workers=2)) == ["s2_000", "s2_001", "s3_000", "s3_001"]
    assert sorted(_keys(r0, num_workers=2) + _keys(r1, num_workers=2)) == everything
    with pytest.raises(ValueError, match="6 shards for 8 reading processes"):
        ImageTextShards(paths, rank=0, world_size=4).assigned_shards(num_workers=2)


def test_seeded_epoch_order(tmp_path: Path) -> None:
    paths = _shards(tmp_path, (1, 1, 1, 1, 1))
    ds = ImageTextShards(paths, seed=5)
    ds.set_epoch(2)
    want = list(range(5))
    random.Random(7).shuffle(want)
    assert ds.epoch_order() == want
    assert [s["shard"] for s in ds] == want
    assert ImageTextShards(paths).epoch_order() == [0, 1, 2, 3, 4]


def test_resume_from_a_position(tmp_path: Path) -> None:
    paths = _shards(tmp_path)
    full = _keys(ImageTextShards(paths))
    resumed = _keys(ImageTextShards(paths, resume=ShardPosition(shard=2, offset=1)))
    assert resumed == ["s2_001", "s2_002", "s2_003", "s3_000"]
    assert resumed == full[6:]
    with pytest.raises(ValueError, match="resume shard 9 outside 0..3"):
        ImageTextShards(paths, resume=ShardPosition(9, 0))
    with pytest.raises(ValueError, match="single ShardPosition resumes one reading process, not 2"):
        list(ImageTextShards(paths, rank=0, world_size=2, resume=ShardPosition(2, 1)))


def test_progress_resume_is_exactly_once_across_worker_counts(tmp_path: Path) -> None:
    """Consume 5 batches with 2 workers, save progress, resume with 1 worker or 2: every sample once."""
    paths = _shards(tmp_path, (3, 2, 4, 1, 5, 2))
    everything = sorted(_keys(ImageTextShards(paths)))
    progress = ShardProgress()
    seen: list[str] = []
    loader = torch.utils.data.DataLoader(
        ImageTextShards(paths), batch_size=2, num_workers=2, collate_fn=_collate
    )
    for i, batch in enumerate(loader):
        if i == 5:
            break
        seen += batch["key"]
        progress.update(batch)
    state = progress.state_dict()
    assert set(state) == {"done", "finished"}
    for workers in (0, 2):
        again = ShardProgress.from_state_dict(state)
        rest = _keys(ImageTextShards(paths, resume=again), **({"num_workers": workers} if workers else {}))
        assert sorted(seen + rest) == everything
        assert not set(seen) & set(rest)


def _collate(samples: list[dict]) -> dict:
    return {
        "key": [s["key"] for s in samples],
        "shard": torch.tensor([s["shard"] for s in samples]),
        "offset": torch.tensor([s["offset"] for s in samples]),
        "last": torch.tensor([s["last"] for s in samples]),
    }


def test_progress_bookkeeping() -> None:
    p = ShardProgress()
    p.update({"shard": [4, 4, 1], "offset": [0, 1, 7], "last": [False, True, False]})
    assert p.skip(4) is None and p.skip(1) == 8 and p.skip(0) == 0
    assert p.state_dict() == {"done": {"1": 8, "4": 2}, "finished": [4]}


def test_errors_name_shard_and_sample(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.tar: shard not found"):
        ImageTextShards([tmp_path / "missing.tar"])
    no_text = _write_tar(tmp_path / "a.tar", [("k1.png", _png(1))])
    with pytest.raises(DataFormatError, match=r"a\.tar: sample 'k1': no caption \.txt \(has \['png'\]\)"):
        list(ImageTextShards([no_text]))
    no_image = _write_tar(tmp_path / "b.tar", [("k2.txt", b"words")])
    with pytest.raises(DataFormatError, match=r"b\.tar: sample 'k2': no image"):
        list(ImageTextShards([no_image]))
    empty = _write_tar(tmp_path / "c.tar", [("k3.png", _png(1)), ("k3.txt", b"  \n")])
    with pytest.raises(DataFormatError, match=r"c\.tar: sample 'k3': empty caption"):
        list(ImageTextShards([empty]))
    broken = _write_tar(tmp_path / "d.tar", [("k4.jpg", b"not a jpeg"), ("k4.txt", b"x")])
    with pytest.raises(ImageDecodeError, match=r"d\.tar: sample 'k4': cannot decode \.jpg"):
        list(ImageTextShards([broken]))
    corrupt = tmp_path / "e.tar"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    with pytest.raises(DataFormatError, match=r"e\.tar: cannot read the tar shard"):
        list(ImageTextShards([corrupt]))
