"""View-feature TSVs in the released R2R-EnvDrop / CLIP-ViL format."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

from clipvil.data.view_tsv import ViewRecord, iter_view_tsv, read_view_tsv, write_view_tsv


def _feats(seed: int, d: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((36, d)).astype(np.float32)


def test_round_trip(tmp_path: Path) -> None:
    source = {("scanA", "vp1"): _feats(0), ("scanA", "vp2"): _feats(1), ("scanB", "vp1"): _feats(2)}
    path = tmp_path / "views.tsv"
    assert write_view_tsv(path, source) == 3
    back = read_view_tsv(path)
    assert list(back) == list(source)
    for key, value in source.items():
        assert back[key].dtype == np.float32
        np.testing.assert_array_equal(back[key], value)
    records = list(iter_view_tsv(path))
    assert (records[0].image_w, records[0].image_h, records[0].vfov) == (640, 480, 60.0)
    write_view_tsv(path, [ViewRecord("s", "v", _feats(3, 4), 320, 240, 75.5)])
    (rec,) = iter_view_tsv(path)
    assert (rec.image_w, rec.image_h, rec.vfov) == (320, 240, 75.5) and rec.features.shape == (36, 4)
    assert not (tmp_path / "views.tsv.tmp").exists()


def test_reads_a_file_written_as_the_precompute_script_does(tmp_path: Path) -> None:
    # the bytes of CLIP-ViL's precomute_imagenet_views.py output, assembled here by hand
    a, b = _feats(4, 512), _feats(5, 512)
    lines = [f"17DRP5sb8fy\t{vp}\t640\t480\t60\t{base64.b64encode(x.tobytes()).decode()}\r\n"
             for vp, x in (("10c252c90fa24ef3b698c6f54d984c5c", a), ("08c774f20c984008882da2b8547850eb", b))]
    path = tmp_path / "CLIP-ViT-B-32-views.tsv"
    path.write_bytes("".join(lines).encode("ascii"))
    feats = read_view_tsv(path)
    np.testing.assert_array_equal(feats[("17DRP5sb8fy", "10c252c90fa24ef3b698c6f54d984c5c")], a)
    np.testing.assert_array_equal(feats[("17DRP5sb8fy", "08c774f20c984008882da2b8547850eb")], b)
    # and our writer produces exactly those bytes
    out = tmp_path / "ours.tsv"
    write_view_tsv(out, {("17DRP5sb8fy", "10c252c90fa24ef3b698c6f54d984c5c"): a,
                         ("17DRP5sb8fy", "08c774f20c984008882da2b8547850eb"): b})
    assert out.read_bytes() == path.read_bytes()


@pytest.mark.parametrize(("row", "message"), [
    ("s\tv\t640\t480\t60", "5 fields"),
    ("s\tv\t640\t480\t60\t@@notbase64@@", "not valid base64"),
    ("s\tv\t640\t480\t60\t" + base64.b64encode(np.zeros(35, np.float32).tobytes()).decode(), "float32 array"),
    ("s\tv\twide\t480\t60\t" + base64.b64encode(np.zeros(36, np.float32).tobytes()).decode(), "image_w"),
    ("s\tother\t640\t480\t60\t" + base64.b64encode(np.zeros(72, np.float32).tobytes()).decode(), "width 2"),
    ("s\tgood\t640\t480\t60\t" + base64.b64encode(np.zeros(36, np.float32).tobytes()).decode(), "twice"),
])
def test_bad_rows_name_the_file_and_line(tmp_path: Path, row: str, message: str) -> None:
    good = "s\tgood\t640\t480\t60\t" + base64.b64encode(np.zeros(36, np.float32).tobytes()).decode()
    path = tmp_path / "bad.tsv"
    path.write_text(good + "\r\n" + row + "\r\n", encoding="ascii")
    with pytest.raises(ValueError, match=rf"bad\.tsv: line 2: .*{message}"):
        read_view_tsv(path)


def test_missing_file_and_bad_shapes(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        read_view_tsv(tmp_path / "nope.tsv")
    with pytest.raises(ValueError, match=r"s/v: features of shape \(35, 2\)"):
        write_view_tsv(tmp_path / "w.tsv", {("s", "v"): np.zeros((35, 2))})
    assert not (tmp_path / "w.tsv").exists() and not (tmp_path / "w.tsv.tmp").exists()
