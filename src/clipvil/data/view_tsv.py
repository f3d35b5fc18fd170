"""The released view-feature TSVs of R2R-EnvDrop / CLIP-ViL-VLN (e.g. `CLIP-ViT-B-32-views.tsv`).

Format (as CLIP-ViL's precompute script writes and R2R-EnvDrop's `read_img_features` reads it): one row
per viewpoint, tab-separated, no header, fields

    scanId  viewpointId  image_w  image_h  vfov  features

where `features` is base64 of the float32 (little-endian) array [36, D] of the 36 discretised views in
view-index order (clipvil.data.nav_env numbering), D = 512 for CLIP ViT-B/32, 1024 for RN50, 2048 for
ImageNet ResNet-152. Rows end with "\\r\\n" (Python's csv default); a field holds megabytes, so the csv
field size limit is raised. Every bad row raises a ValueError naming the file and the line.
"""

from __future__ import annotations

import base64
import binascii
import csv
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipvil.common.atomic import atomic_write

TSV_FIELDNAMES = ("scanId", "viewpointId", "image_w", "image_h", "vfov", "features")
N_VIEWS = 36


@dataclass(frozen=True)
class ViewRecord:
    """One row: the view features of one viewpoint and the camera they were rendered with."""

    scan: str
    viewpoint: str
    features: np.ndarray  # [views, D] float32
    image_w: int = 640  # MatterSim camera width used for the views
    image_h: int = 480  # camera height
    vfov: float = 60.0  # vertical field of view, degrees


def _raise_field_limit() -> None:
    limit = sys.maxsize
    while True:  # sys.maxsize overflows the C long on some platforms
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:
            limit //= 2


def _number(text: str, kind: type, where: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: {name} {text!r} is not a number") from None
    if kind is int:
        if not value.is_integer():
            raise ValueError(f"{where}: {name} {text!r} is not an integer")
        return int(value)
    return value


def _decode(text: str, views: int, where: str) -> np.ndarray:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as err:
        raise ValueError(f"{where}: features are not valid base64 ({err})") from None
    if not raw or len(raw) % (4 * views):
        raise ValueError(f"{where}: features hold {len(raw)} bytes, not a float32 array [{views}, D]")
    return np.frombuffer(raw, dtype="<f4").reshape(views, -1).astype(np.float32)  # [views, D]


def iter_view_tsv(path: str | Path, views: int = N_VIEWS) -> Iterator[ViewRecord]:
    """The rows of a view-feature TSV, in file order (streaming; the file may hold every scan).

    Raises FileNotFoundError for a missing file and ValueError naming the line for a bad row (wrong number
    of fields, non-numeric camera fields, bad base64, a size that is not [views, D], a D that differs from
    the earlier rows, a viewpoint seen twice)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such view-feature file")
    _raise_field_limit()
    width: int | None = None
    seen: set[tuple[str, str]] = set()
    with path.open("r", newline="", encoding="ascii", errors="strict") as f:
        reader = csv.reader(f, delimiter="\t")
        try:
            for row in reader:
                where = f"{path.name}: line {reader.line_num}"
                if not row:
                    continue
                if len(row) != len(TSV_FIELDNAMES):
                    raise ValueError(f"{where}: {len(row)} fields, expected {len(TSV_FIELDNAMES)} "
                                     f"({', '.join(TSV_FIELDNAMES)})")
                scan, viewpoint, w, h, vfov, feats = row
                if not scan or not viewpoint:
                    raise ValueError(f"{where}: empty scanId or viewpointId")
                if (scan, viewpoint) in seen:
                    raise ValueError(f"{where}: viewpoint {scan}/{viewpoint} appears twice")
                seen.add((scan, viewpoint))
                array = _decode(feats, views, where)
                if width is not None and array.shape[1] != width:
                    raise ValueError(f"{where}: features have width {array.shape[1]}, earlier rows {width}")
                width = array.shape[1]
                yield ViewRecord(scan, viewpoint, array, _number(w, int, where, "image_w"),
                                 _number(h, int, where, "image_h"), _number(vfov, float, where, "vfov"))
        except (csv.Error, UnicodeDecodeError) as err:
            raise ValueError(f"{path.name}: line {reader.line_num}: unreadable TSV ({err})") from None


def read_view_tsv(path: str | Path, views: int = N_VIEWS) -> dict[tuple[str, str], np.ndarray]:
    """{(scan, viewpoint): features [views, D] float32} of a whole file (the lookup NavEnv takes)."""
    return {(r.scan, r.viewpoint): r.features for r in iter_view_tsv(path, views)}


def _records(source: Iterable[ViewRecord] | Mapping[tuple[str, str], np.ndarray]) -> Iterator[ViewRecord]:
    if isinstance(source, Mapping):
        for (scan, viewpoint), feats in source.items():
            yield ViewRecord(scan, viewpoint, np.asarray(feats))
    else:
        yield from source


def _row(rec: ViewRecord, views: int, name: str) -> list[object]:
    feats = np.ascontiguousarray(rec.features, dtype="<f4")
    if feats.ndim != 2 or feats.shape[0] != views:
        raise ValueError(f"{name}: {rec.scan}/{rec.viewpoint}: features of shape {feats.shape}, "
                         f"expected [{views}, D]")
    vfov = int(rec.vfov) if float(rec.vfov).is_integer() else rec.vfov
    encoded = base64.b64encode(feats.tobytes()).decode("ascii")
    return [rec.scan, rec.viewpoint, rec.image_w, rec.image_h, vfov, encoded]


def write_view_tsv(path: str | Path, source: Iterable[ViewRecord] | Mapping[tuple[str, str], np.ndarray],
                   views: int = N_VIEWS) -> int:
    """Writes records (or a {(scan, viewpoint): [views, D]} mapping, with the default camera) in the
    released format; returns the number of rows. Written to `<path>.tmp`, renamed at the end."""
    path = Path(path)
    count = 0

    def write(tmp: Path) -> None:
        nonlocal count
        with tmp.open("w", newline="", encoding="ascii") as f:
            writer = csv.writer(f, delimiter="\t", lineterminator="\r\n")
            for rec in _records(source):
                writer.writerow(_row(rec, views, path.name))
                count += 1

    atomic_write(path, write)
    return count
