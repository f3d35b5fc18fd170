"""`clipvil extract`: store contents, provenance, bad images, strict mode, resume after kill -9, torchrun shards."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from clipvil.encoders import ImageDecodeError, build_encoder, get_preset, load_image, prepare
from clipvil.encoders.extract import ExtractConfig, list_images, run_extract
from clipvil.encoders.store import FeatureStore, ProvenanceMismatch

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "clipvil.cli"]


@pytest.fixture()
def image_dir(tmp_path: Path, shared_data: Path) -> Path:
    d = tmp_path / "images"
    (d / "sub").mkdir(parents=True)
    for p in sorted((shared_data / "allennlp-models/images/vqav2").glob("*.jpg")):
        shutil.copy(p, d / p.name)
    shutil.copy(shared_data / "hf-tests-samples/000000039769.png", d / "sub/cats.png")
    real = (shared_data / "allennlp-models/images/gqa/n578564.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(real[: len(real) // 4])
    (d / "notes.png").write_text("not an image")
    return d


def _cfg(images: Path, out: Path, **kw: object) -> ExtractConfig:
    base = dict(encoder="RN50", images=images, out=out, preset="views", batch_size=2, workers=0, progress=False)
    return ExtractConfig(**{**base, **kw})  # type: ignore[arg-type]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}


def test_extract_writes_features_errors_and_provenance(image_dir: Path, tmp_path: Path) -> None:
    summary = run_extract(_cfg(image_dir, tmp_path / "store", pooled=True))
    assert (summary.total, summary.extracted, summary.failed, summary.skipped) == (6, 4, 2, 0)
    store = FeatureStore(tmp_path / "store")
    assert store.ids == ["COCO_train2014_000000458752", "COCO_val2014_000000262148",
                         "COCO_val2014_000000393225", "sub/cats"]
    errors = [json.loads(x) for x in (tmp_path / "store/errors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in errors] == ["notes", "truncated"]
    assert errors[0]["reason"] == f"{image_dir / 'notes.png'}: not an image (PIL cannot identify the format)"
    assert errors[1]["reason"].startswith(f"{image_dir / 'truncated.jpg'}: corrupt or truncated image")
    assert errors[1]["path"] == str(image_dir / "truncated.jpg")
    prov = store.provenance
    assert (prov["encoder"], prov["preset"], prov["layer"], prov["dtype"]) == ("RN50", "views", "layer4", "float16")
    assert prov["weights_sha256"] == "random-seed0" and "torch" in prov["versions"]
    got = store.get("sub/cats")
    assert got.feats.dtype == np.float16 and got.feats.shape == (49, 2048) and got.hw == (7, 7)
    enc = build_encoder("RN50")
    pre = prepare(load_image(image_dir / "sub/cats.png"), get_preset("views"), enc.mean, enc.std)
    with torch.inference_mode():
        ref = enc(pre.pixels[None], pooled=True)
    np.testing.assert_allclose(got.feats.astype(np.float32), ref.feats[0].numpy(), rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(got.pooled.astype(np.float32), ref.pooled[0].numpy(), rtol=2e-2, atol=2e-2)
    batch = store.grids(["sub/cats", "COCO_val2014_000000262148"])
    assert batch.feats.shape == (2, 49, 2048) and batch.pooled.shape == (2, 1024)


def test_rerun_skips_and_other_provenance_is_refused(image_dir: Path, tmp_path: Path) -> None:
    run_extract(_cfg(image_dir, tmp_path / "s"))
    again = run_extract(_cfg(image_dir, tmp_path / "s"))
    assert (again.extracted, again.failed, again.skipped) == (0, 0, 6)
    with pytest.raises(ProvenanceMismatch, match=r"preset: store has 'views', this run has 'caption'"):
        run_extract(_cfg(image_dir, tmp_path / "s", preset="caption"))


def test_strict_stops_at_first_bad_image(image_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match=r"notes.png: not an image .*--strict"):
        run_extract(_cfg(image_dir, tmp_path / "s", strict=True, batch_size=1))


def test_list_file_and_duplicate_ids(image_dir: Path, tmp_path: Path) -> None:
    lst = tmp_path / "list.txt"
    lst.write_text(f"cats\t{image_dir / 'sub/cats.png'}\n# comment\n{image_dir / 'COCO_val2014_000000262148.jpg'}\n")
    assert [e.id for e in list_images(lst)] == ["COCO_val2014_000000262148", "cats"]
    lst.write_text(f"a\t{image_dir / 'sub/cats.png'}\na\t{image_dir / 'notes.png'}\n")
    with pytest.raises(ValueError, match="image id 'a' appears twice"):
        list_images(lst)


def _store_arrays(path: Path) -> dict[str, np.ndarray]:
    store = FeatureStore(path)
    return {i: store.get(i).feats for i in store.ids}


def test_resume_after_kill9_equals_uninterrupted_run(image_dir: Path, tmp_path: Path) -> None:
    for k in range(4):  # 10 images, batch 1: enough parts to kill in the middle
        shutil.copy(image_dir / "sub/cats.png", image_dir / f"sub/cats{k}.png")
    args = ["extract", "--encoder", "RN50", "--preset", "views", "--images", str(image_dir), "--batch-size", "1",
            "--workers", "0", "--no-progress"]
    proc = subprocess.Popen([*CLI, *args, "--out", str(tmp_path / "killed")], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = tmp_path / "killed/parts"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("part-*.h5"))) < 3:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = FeatureStore(tmp_path / "killed")  # readable at once: only complete parts are visible
    done_before = len(partial.finished_ids)
    assert 3 <= done_before < 10
    subprocess.run([*CLI, *args, "--out", str(tmp_path / "killed")], env=_env(), check=True, capture_output=True)
    subprocess.run([*CLI, *args, "--out", str(tmp_path / "clean")], env=_env(), check=True, capture_output=True)
    resumed, clean = _store_arrays(tmp_path / "killed"), _store_arrays(tmp_path / "clean")
    assert sorted(resumed) == sorted(clean) and len(clean) == 8
    for k in clean:
        np.testing.assert_array_equal(resumed[k], clean[k])
    assert not list(parts.glob(".part-*")), "the rerun removed the killed run's temp file"


def test_torchrun_ranks_write_shards_read_as_one_store(image_dir: Path, tmp_path: Path) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    args = ["extract", "--encoder", "RN50", "--preset", "views", "--images", str(image_dir), "--batch-size", "1",
            "--workers", "0", "--no-progress"]
    done = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "clipvil.cli", *args, "--out",
                           str(tmp_path / "multi")], env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run_extract(_cfg(image_dir, tmp_path / "single", batch_size=1))
    multi, single = _store_arrays(tmp_path / "multi"), _store_arrays(tmp_path / "single")
    assert sorted(multi) == sorted(single) and len(single) == 4
    for k in single:
        np.testing.assert_allclose(multi[k].astype(np.float32), single[k].astype(np.float32), atol=1e-2)
    assert len((tmp_path / "multi/errors.jsonl").read_text().splitlines()) == 2
