"""View features for the VLN task: a released-format TSV imported into a store (bit for bit, resumable,
idempotent, refused when another file), and a store extracted from the 36 real Matterport views of one
viewpoint grouped into the [36, D] array the task sees."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from clipvil.apps import import_views
from clipvil.apps.extract import ExtractConfig, run_extract
from clipvil.apps.import_views import run_import_views
from clipvil.cli import main as cli_main
from clipvil.data.view_tsv import write_view_tsv
from clipvil.encoders.images import load_image
from clipvil.encoders.preprocess import get_preset, prepare
from clipvil.encoders.registry import build_encoder
from clipvil.families.vln.features import ViewFeatures
from clipvil.features.store import FeatureStore, ProvenanceMismatch

SCAN, VIEWPOINT = "17DRP5sb8fy", "10c252c90fa24ef3b698c6f54d984c5c"


def _rows(n: int, dim: int = 12, seed: int = 0) -> dict[tuple[str, str], np.ndarray]:
    rng = np.random.default_rng(seed)
    return {(f"scan{i % 2}", f"vp{i:03d}"): rng.standard_normal((36, dim)).astype(np.float32) for i in range(n)}


def test_tsv_import_round_trips_bit_for_bit(tmp_path: Path) -> None:
    rows = _rows(7)
    rows[("scan0", "vp000")][3, 5] = np.float32(np.nextafter(np.float32(1), np.float32(2)))  # a last-bit value
    write_view_tsv(tmp_path / "CLIP-ViT-B-32-views.tsv", rows)
    summary = run_import_views(tmp_path / "CLIP-ViT-B-32-views.tsv", tmp_path / "store", batch=3)
    assert (summary.rows, summary.imported, summary.skipped, summary.dim) == (7, 7, 0, 12)
    views = ViewFeatures(tmp_path / "store")
    assert views.layout == "viewpoint" and views.dim == 12 and len(views) == 7
    for key, feats in rows.items():
        got = views[key]
        assert got.dtype == np.float32 and got.tobytes() == feats.tobytes()
    store = FeatureStore(tmp_path / "store")
    item = store.get("scan1/vp001")
    assert item.hw == (3, 12) and item.mask.all() and item.pooled is None
    prov = store.provenance
    assert (prov["encoder"], prov["layout"], prov["dim"], prov["dtype"]) == ("CLIP-ViT-B-32-views", "viewpoint", 12,
                                                                          "float32")
    assert prov["source"]["tsv"] == "CLIP-ViT-B-32-views.tsv" and len(prov["source"]["sha256"]) == 64


def test_import_resumes_after_a_failure_and_a_rerun_imports_nothing(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _rows(5)
    write_view_tsv(tmp_path / "v.tsv", rows)
    real_write, calls = import_views.write_part, []

    def failing(*args, **kwargs):  # the second part dies (a kill between two atomic parts)
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(import_views, "write_part", failing)
    with pytest.raises(OSError, match="disk full"):
        run_import_views(tmp_path / "v.tsv", tmp_path / "store", batch=2)
    monkeypatch.setattr(import_views, "write_part", real_write)
    resumed = run_import_views(tmp_path / "v.tsv", tmp_path / "store", batch=2)
    assert (resumed.imported, resumed.skipped) == (3, 2)
    again = run_import_views(tmp_path / "v.tsv", tmp_path / "store", batch=2)
    assert (again.imported, again.skipped) == (0, 5)
    views = ViewFeatures(tmp_path / "store")
    assert all(views[k].tobytes() == v.tobytes() for k, v in rows.items())


def test_another_file_is_refused_and_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_view_tsv(tmp_path / "a.tsv", _rows(2, seed=1))
    write_view_tsv(tmp_path / "b.tsv", _rows(2, seed=2))
    run_import_views(tmp_path / "a.tsv", tmp_path / "store", encoder="views")
    with pytest.raises(ProvenanceMismatch, match="sha256"):
        run_import_views(tmp_path / "b.tsv", tmp_path / "store", encoder="views")
    (tmp_path / "empty.tsv").write_text("")
    assert cli_main(["import-views", str(tmp_path / "empty.tsv"), "--out", str(tmp_path / "e")]) == 2
    assert "no rows" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()  # a failed start leaves no store
    (tmp_path / "bad.tsv").write_text("scan\tvp\t640\t480\t60\tnot-base64!\r\n")
    assert cli_main(["import-views", str(tmp_path / "bad.tsv"), "--out", str(tmp_path / "f")]) == 2
    assert "bad.tsv: line 1" in capsys.readouterr().err
    assert cli_main(["import-views", str(tmp_path / "a.tsv"), "--out", str(tmp_path / "g")]) == 0
    assert json.loads(capsys.readouterr().out)["imported"] == 2


def test_extracted_real_views_are_grouped_per_viewpoint_in_float32(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "clip-vil/matterport_views" / SCAN / f"{VIEWPOINT}_rgb"
    listing = tmp_path / "views.txt"  # ids <scan>/<viewpoint>/<view index>
    listing.write_text("".join(f"{SCAN}/{VIEWPOINT}/{i}\t{folder / f'{i}.jpg'}\n" for i in range(36)))
    run_extract(ExtractConfig(encoder="ViT-B-32", images=listing, out=tmp_path / "store", preset="views",
                              pooled=True, dtype="float32", batch_size=12, workers=0, progress=False))
    views = ViewFeatures(tmp_path / "store")
    feats = views[(SCAN, VIEWPOINT)]
    assert views.layout == "image" and feats.shape == (36, 512) and feats.dtype == np.float32
    store = FeatureStore(tmp_path / "store")
    for i in range(36):
        pooled = store.get(f"{SCAN}/{VIEWPOINT}/{i}").pooled
        assert pooled is not None and np.array_equal(feats[i], pooled)
    # one view against the tower run by hand (224 center crop of the 640x480 view, the pooled embedding)
    encoder = build_encoder("ViT-B-32").eval()
    prepared = prepare(load_image(folder / "17.jpg"), get_preset("views"), encoder.mean, encoder.std,
                       encoder.native_size)
    with torch.no_grad():
        want = encoder(prepared.pixels.unsqueeze(0), [prepared.content_hw], pooled=True).pooled[0].numpy()
    np.testing.assert_allclose(feats[17], want, rtol=1e-4, atol=1e-5)
    assert not np.allclose(feats[17], feats[16])
    one = tmp_path / "one.txt"
    one.write_text(listing.read_text().splitlines()[0] + "\n")
    run_extract(ExtractConfig(encoder="ViT-B-32", images=one, out=tmp_path / "half", preset="views",
                              pooled=True, dtype="float16", workers=0, progress=False))
    with pytest.raises(ValueError, match="float16"):
        ViewFeatures(tmp_path / "half")
