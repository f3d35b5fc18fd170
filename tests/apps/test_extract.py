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

from clipvil.apps.extract import ExtractConfig, list_images, run_extract
from clipvil.encoders import ImageDecodeError, build_encoder, get_preset, load_image, prepare
from clipvil.features.store import FeatureStore, ProvenanceMismatch

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
    base = {"encoder": "RN50", "images": images, "out": out, "preset": "views", "batch_size": 2, "workers": 0,
            "progress": False}
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
    assert (prov["resize"], prov["activation"], prov["block_index"]) == (None, None, None)
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


def test_rerun_skips_stored_retries_failed_and_other_provenance_is_refused(image_dir: Path, tmp_path: Path,
                                                                          shared_data: Path) -> None:
    first = run_extract(_cfg(image_dir, tmp_path / "s"))
    assert (first.failed, first.failures_remaining, first.retried) == (2, 2, 0)
    assert (tmp_path / "s/index.npz").is_file()
    shutil.copy(shared_data / "hf-tests-samples/000000039769.png", image_dir / "notes.png")  # the file is fixed
    again = run_extract(_cfg(image_dir, tmp_path / "s"))
    assert (again.skipped, again.retried, again.extracted, again.failed, again.failures_remaining) == (4, 2, 1, 1, 1)
    errors = [json.loads(x) for x in (tmp_path / "s/errors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in errors] == ["truncated"], "errors.jsonl holds only what still fails"
    assert "notes" in FeatureStore(tmp_path / "s")
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
                           str(tmp_path / "multi")], check=False, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run_extract(_cfg(image_dir, tmp_path / "single", batch_size=1))
    multi, single = _store_arrays(tmp_path / "multi"), _store_arrays(tmp_path / "single")
    assert sorted(multi) == sorted(single) and len(single) == 4
    for k in single:
        np.testing.assert_allclose(multi[k].astype(np.float32), single[k].astype(np.float32), atol=1e-2)
    assert len((tmp_path / "multi/errors.jsonl").read_text().splitlines()) == 2
    assert FeatureStore(tmp_path / "multi").scanned_parts == 0, "rank 0 indexed every rank's parts"


def test_provenance_records_resize_activation_and_block(image_dir: Path, tmp_path: Path) -> None:
    """The vqa preset's default is the official two-step bilinear resize; a ViT records its block and activation."""
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(image_dir / "sub/cats.png", one / "cats.png")
    run_extract(_cfg(one, tmp_path / "v", encoder="ViT-B-32-quickgelu", preset="vqa", block=-2))
    prov = FeatureStore(tmp_path / "v").provenance
    assert (prov["preset"], prov["resize"], prov["input_size"]) == ("vqa", "official", "600x1000")
    assert (prov["layer"], prov["block"], prov["block_index"]) == ("block10", -2, 10)
    assert (prov["activation"], prov["activation_source"]) == ("quick_gelu", "model name")
    assert FeatureStore(tmp_path / "v").get("cats").hw == (18, 31)
    with pytest.raises(ProvenanceMismatch, match="resize: store has 'official', this run has 'direct-bicubic'"):
        run_extract(_cfg(one, tmp_path / "v", encoder="ViT-B-32-quickgelu", preset="vqa", block=-2,
                         resize="direct-bicubic"))


def test_dangling_symlink_is_recorded_and_empty_folder_is_an_error(image_dir: Path, tmp_path: Path) -> None:
    (image_dir / "dangling.jpg").symlink_to(tmp_path / "moved-away.jpg")
    summary = run_extract(_cfg(image_dir, tmp_path / "s"))
    assert (summary.total, summary.failed) == (7, 3)
    errors = {e["id"]: e for e in map(json.loads, (tmp_path / "s/errors.jsonl").read_text().splitlines())}
    assert "broken symbolic link" in errors["dangling"]["reason"]
    (tmp_path / "empty/sub").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"images \(--images\) .*empty: no image files"):
        run_extract(_cfg(tmp_path / "empty", tmp_path / "e"))
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize(("change", "message"), [
    ({"batch_size": 0}, r"batch_size \(--batch-size\) must be at least 1, got 0"),
    ({"forward_batch": -1}, r"forward_batch \(--forward-batch\) must be 0 \(auto\) or positive, got -1"),
    ({"max_pixels": 0}, r"max_pixels \(--max-pixels\) must be positive"),
    ({"resize": "sideways"}, r"resize \(--resize\): unknown mode 'sideways'"),
])
def test_bad_settings_name_the_option(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _cfg(tmp_path, tmp_path / "s", **change)


def test_out_naming_a_file_is_a_one_line_error(image_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(ValueError, match=r"out \(--out\) .*taken: exists and is not a directory"):
        _cfg(image_dir, tmp_path / "taken")
    from clipvil.cli import main

    assert main(["extract", "--encoder", "RN50", "--images", str(image_dir), "--out", str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--out" in err and "Traceback" not in err


def test_failed_start_leaves_no_store_behind(image_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not weights")
    with pytest.raises(ValueError, match="cannot read weights"):
        run_extract(_cfg(image_dir, tmp_path / "s", weights=bad))
    with pytest.raises(ValueError, match="unknown encoder 'RN51'"):
        run_extract(_cfg(image_dir, tmp_path / "s", encoder="RN51"))
    assert not (tmp_path / "s").exists()
    first_bad = tmp_path / "first_bad"
    first_bad.mkdir()
    shutil.copy(image_dir / "notes.png", first_bad / "a.png")  # sorted first, not an image
    shutil.copy(image_dir / "sub/cats.png", first_bad / "b.png")
    with pytest.raises(ImageDecodeError, match="--strict"):  # fails after the store was made, before any part
        run_extract(_cfg(first_bad, tmp_path / "s", strict=True, preset="caption"))
    assert not (tmp_path / "s/provenance.json").exists()
    done = run_extract(_cfg(first_bad, tmp_path / "s"))  # the corrected command (another preset) is not locked out
    assert done.extracted == 1 and FeatureStore(tmp_path / "s").provenance["preset"] == "views"


def test_too_large_images_are_recorded_with_the_limit(image_dir: Path, tmp_path: Path) -> None:
    summary = run_extract(_cfg(image_dir, tmp_path / "s", max_pixels=100_000))
    errors = [json.loads(x) for x in (tmp_path / "s/errors.jsonl").read_text().splitlines()]
    big = [e for e in errors if "image too large" in e["reason"]]
    assert big and all("> the limit of 100000" in e["reason"] for e in big)
    assert summary.failed == len(errors) and summary.extracted + summary.failed == 6
