"""Referring expressions: RefCOCO / RefCOCO+ / RefCOCOg, and the synthetic world's, as `RefExample`s.

**Official form** (lichengunc/refer, the files its ``REFER`` class reads)::

    <data_root>/<dataset>/refs(<split_by>).p   pickle: a list of refs
        {"ref_id": 0, "ann_id": 1719310, "image_id": 581857, "category_id": 1, "split": "train",
         "file_name": "COCO_train2014_000000581857_16.jpg", "sent_ids": [0, 1, 2],
         "sentences": [{"sent_id": 0, "sent": "the lady with the blue shirt", "raw": "THE LADY ...",
                        "tokens": ["the", "lady", ...]}, ...]}
    <data_root>/<dataset>/instances.json       COCO-style {"images", "annotations", "categories"}

The box of a ref is the ``bbox`` [x, y, w, h] of its annotation (``ann_id``), its image file the ``file_name``
of its image in instances.json (the refs' own ``file_name`` carries an ``_<ann id>`` suffix and names no
file). Splits: refcoco / refcoco+ (unc) train, val, testA, testB; refcocog (umd) train, val, test; refcocog
(google) train, val; refclef also testC. Images are COCO train2014 for all three COCO datasets.

The pickles were written by Python 2 (protocol 2, ``str`` as bytes), so they are read with
``encoding="latin1"`` through a **restricted unpickler** that refuses every global: only plain containers,
strings and numbers can come out, and a pickle that names any class or function (e.g. ``os.system``) is
refused with a DataFormatError before anything runs.

**JSON form** (what later works ship: one list of refs with the box inline)::

    [{"ref_id": 0, "image_id": 581857, "split": "train", "category_id": 1, "bbox": [x, y, w, h],
      "file_name": "COCO_train2014_000000581857.jpg",         # optional: COCO train2014 name by default
      "sentences": ["the lady with the blue shirt", ...]},    # or [{"sent": ...}, ...] as in the pickle
     ...]

The file may also be ``{"refs": [...]}`` or ``{"train": [...], "val": [...], ...}`` (the key is then the split
and a record's own ``split`` may be left out). Errors name the file and the ref: a missing or mistyped field,
a duplicate ref id, a ref without sentences, an unknown split or annotation. A box of zero width or height is
kept and counted as a warning.

**Synthetic world**: see `read_synthetic_refs`.
"""

from __future__ import annotations

import io
import pickle
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipvil.data.synthetic import layout as world_layout
from clipvil.data.synthetic.manifest import Manifest
from clipvil.data.synthetic.refer import unique_descs
from clipvil.data.synthetic.scene import SHAPES, Background, Scene, SceneObject
from clipvil.data.validate import (
    DataFormatError,
    PathLike,
    WarningCounter,
    check_new,
    error,
    expect_type,
    get_field,
    load_json,
    no_gc,
    optional_field,
)

REF_SPLITS: tuple[str, ...] = ("train", "val", "test", "testA", "testB", "testC")
# the split_by of each dataset in most papers (refcocog: the umd partition; google's has no test split)
DEFAULT_SPLIT_BY: dict[str, str] = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd", "refclef": "unc"}
_REF_FILE_NAME = re.compile(r"^(COCO_[a-z]+\d+_\d{12})_\d+(\.jpg)$")  # the refs' "<image>_<ann id>.jpg"


@dataclass(slots=True)
class RefExample:
    """One referred object with all its expressions."""

    ref_id: int
    image_id: int
    file_name: str  # the image file, relative to the image root (COCO train2014 folder; a synthetic world's root)
    split: str  # one of REF_SPLITS
    sentences: list[str]  # the referring expressions (official: each sentence's cleaned "sent")
    box_xywh: tuple[float, float, float, float]  # the object's box in pixels: left, top, width, height
    category_id: int  # COCO category id (synthetic: 1 + index of the shape in SHAPES)


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles plain containers, strings and numbers only: every global lookup is refused."""

    def __init__(self, data: bytes, source: str) -> None:
        super().__init__(io.BytesIO(data), encoding="latin1")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        raise DataFormatError(
            f"{self.source}: refused to unpickle global {module}.{name}: a refs pickle holds only lists, "
            "dicts, strings and numbers (this file may be malicious or not a refs file)"
        )


def load_plain_pickle(path: PathLike) -> Any:
    """The content of a pickle that holds only plain data (Python 2 protocol-2 pickles included).

    Raises FileNotFoundError, or DataFormatError when the pickle names any class or function or is broken."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    try:
        return _PlainUnpickler(p.read_bytes(), str(p)).load()
    except DataFormatError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError) as err:
        raise error(p, None, f"not a readable pickle ({type(err).__name__}: {err})") from None


def refer_files(data_root: PathLike, dataset: str, split_by: str | None = None) -> tuple[Path, Path]:
    """(refs(<split_by>).p, instances.json) of `dataset` under lichengunc/refer's data root."""
    split_by = split_by or DEFAULT_SPLIT_BY.get(dataset)
    if split_by is None:
        raise ValueError(f"refer_files: unknown dataset {dataset!r}; give split_by (known: {sorted(DEFAULT_SPLIT_BY)})")
    folder = Path(data_root) / dataset
    return folder / f"refs({split_by}).p", folder / "instances.json"


def _sentences(value: Any, path: Path, where: str) -> list[str]:
    """Expressions from a list of strings or of {"sent"|"raw": ...} objects; at least one, none blank."""
    items = expect_type(value, list, path, where, "field 'sentences'")
    out = []
    for k, s in enumerate(items):
        if isinstance(s, Mapping):
            text = optional_field(s, "sent", path, f"{where} sentence {k}", str)
            text = text if text is not None else get_field(s, "raw", path, f"{where} sentence {k}", str)
        else:
            text = expect_type(s, str, path, where, f"sentence {k}")
        if not text.strip():
            raise error(path, where, f"sentence {k} is blank")
        out.append(text)
    if not out:
        raise error(path, where, "no sentences")
    return out


def _box(value: Any, path: Path, where: str, warnings: WarningCounter) -> tuple[float, float, float, float]:
    box = expect_type(value, list, path, where, "bbox")
    if len(box) != 4:
        raise error(path, where, f"bbox must be [x, y, w, h], got {box!r:.60}")
    x, y, w, h = (float(expect_type(v, (int, float), path, where, "bbox value")) for v in box)
    if w < 0 or h < 0:
        raise error(path, where, f"bbox has a negative size: {box}")
    if w == 0 or h == 0:
        warnings.add("zero-area box", where)
    return (x, y, w, h)


def _split(value: Any, path: Path, where: str) -> str:
    split = expect_type(value, str, path, where, "field 'split'")
    if split not in REF_SPLITS:
        raise error(path, where, f"unknown split {split!r}; known: {', '.join(REF_SPLITS)}")
    return split


def _keep(split: str, splits: Collection[str] | None) -> bool:
    return splits is None or split in splits


def _check_splits(splits: Collection[str] | None) -> None:
    unknown = sorted(set(splits or ()) - set(REF_SPLITS))
    if unknown:
        raise ValueError(f"unknown ref split(s) {unknown}; known: {', '.join(REF_SPLITS)}")


def read_refer(
    refs_path: PathLike, instances_path: PathLike, splits: Collection[str] | None = None
) -> list[RefExample]:
    """The refs of an official refs(<split_by>).p with their boxes and image files from instances.json,
    in pickle order; `splits` keeps only refs whose own split is one of them ("test" is not testA + testB)."""
    _check_splits(splits)
    rpath, ipath = Path(refs_path), Path(instances_path)
    refs = load_plain_pickle(rpath)
    if not isinstance(refs, list):
        raise error(rpath, None, f"expected a list of refs, got {type(refs).__name__}")
    with no_gc():
        instances = load_json(ipath)
        images = {get_field(im, "id", ipath, f"images[{i}]", int): im
                  for i, im in enumerate(get_field(instances, "images", ipath, None, list))}
        anns = {get_field(a, "id", ipath, f"annotations[{i}]", int): a
                for i, a in enumerate(get_field(instances, "annotations", ipath, None, list))}
    warnings, seen, out = WarningCounter(rpath), {}, []
    for i, ref in enumerate(refs):
        ref_id = get_field(ref, "ref_id", rpath, f"refs[{i}]", int)
        where = f"ref {ref_id}"
        check_new(seen, ref_id, rpath, where, "ref id", f"refs[{i}]")
        split = _split(get_field(ref, "split", rpath, where, str), rpath, where)
        if not _keep(split, splits):
            continue
        image_id = get_field(ref, "image_id", rpath, where, int)
        ann_id = get_field(ref, "ann_id", rpath, where, int)
        if ann_id not in anns:
            raise error(rpath, where, f"annotation {ann_id} is not in {ipath}")
        ann = anns[ann_id]
        if get_field(ann, "image_id", ipath, f"annotation {ann_id}", int) != image_id:
            raise error(rpath, where, f"image {image_id} differs from annotation {ann_id}'s image in {ipath}")
        if image_id not in images:
            raise error(rpath, where, f"image {image_id} is not in {ipath}")
        out.append(RefExample(
            ref_id=ref_id,
            image_id=image_id,
            file_name=get_field(images[image_id], "file_name", ipath, f"image {image_id}", str),
            split=split,
            sentences=_sentences(get_field(ref, "sentences", rpath, where, list), rpath, where),
            box_xywh=_box(get_field(ann, "bbox", ipath, f"annotation {ann_id}", list), ipath, where, warnings),
            category_id=get_field(ref, "category_id", rpath, where, int),
        ))
    warnings.emit()
    return out


def _json_records(data: Any, path: Path) -> Iterable[tuple[str, int, Any, str | None]]:
    """(position, index, record, split from the enclosing key) for the three accepted layouts."""
    if isinstance(data, Mapping) and "refs" in data:
        data = get_field(data, "refs", path, None, list)
    if isinstance(data, list):
        return ((f"[{i}]", i, r, None) for i, r in enumerate(data))
    if isinstance(data, Mapping):
        for key in data:
            _split(key, path, f"top-level key {key!r}")
        return ((f"{s}[{i}]", i, r, s) for s in data for i, r in enumerate(expect_type(data[s], list, path, s, s)))
    raise error(path, None,
                f"expected a list of refs, {{'refs': [...]}} or {{split: [...]}}, got {type(data).__name__}")


def read_refer_json(path: PathLike, splits: Collection[str] | None = None) -> list[RefExample]:
    """The refs of a JSON refs file with inline boxes (the layouts in the module docstring), in file order."""
    _check_splits(splits)
    p = Path(path)
    data = load_json(p)
    warnings, seen, out = WarningCounter(p), {}, []
    for position, _, ref, key_split in _json_records(data, p):
        ref_id = get_field(ref, "ref_id", p, position, int)
        where = f"ref {ref_id}"
        check_new(seen, ref_id, p, where, "ref id", position)
        own = optional_field(ref, "split", p, where, str)
        if own is not None and key_split is not None and own != key_split:
            raise error(p, where, f"split {own!r} differs from its enclosing key {key_split!r}")
        if own is None and key_split is None:
            raise error(p, where, "missing field 'split'")
        split = _split(own or key_split, p, where)
        if not _keep(split, splits):
            continue
        image_id = get_field(ref, "image_id", p, where, int)
        file_name = optional_field(ref, "file_name", p, where, str)
        if file_name is None:
            file_name = f"COCO_train2014_{image_id:012d}.jpg"
        else:
            file_name = _REF_FILE_NAME.sub(r"\1\2", file_name)  # a refs-pickle name: drop its ann-id suffix
        out.append(RefExample(
            ref_id=ref_id,
            image_id=image_id,
            file_name=file_name,
            split=split,
            sentences=_sentences(get_field(ref, "sentences", p, where, list), p, where),
            box_xywh=_box(get_field(ref, "bbox", p, where, list), p, where, warnings),
            category_id=get_field(ref, "category_id", p, where, int),
        ))
    warnings.emit()
    return out


def _scene(record: Mapping[str, Any]) -> Scene:
    """A Scene back from its scenes-file record (positions as rounded there)."""
    bg = record["background"]
    background = Background(bg["kind"], tuple(bg["base"]), tuple(bg["second"]), bg["angle"], bg["period"],
                            bg["amplitude"])
    objects = tuple(
        SceneObject(o["obj_id"], o["shape"], o["color"], o["size"], o["x"], o["y"], o["radius"], o["rotation"])
        for o in record["objects"]
    )
    return Scene(record["image_id"], record["split"], record["width"], record["height"], background, objects)


def read_synthetic_refs(world: PathLike | Manifest, splits: Collection[str] | None = None) -> list[RefExample]:
    """Referring expressions of a synthetic world, derived from its scenes files (scenes/scenes_<split>.json).

    Every object that some attribute description matches alone is one ref: ref_id = its obj_id, sentences =
    "the <description>" for each such description, shortest first ("the red circle", "the small red circle"),
    box = the object's COCO bbox from the scenes file, category_id = 1 + its shape's index in SHAPES.
    Objects no description singles out are left out (they cannot be referred to). file_name is relative to
    the world's root (coco/<split folder>/COCO_..jpg). Splits are the world's: train, val, test."""
    manifest = world if isinstance(world, Manifest) else Manifest.load(world)
    _check_splits(splits)
    out: list[RefExample] = []
    for split in manifest.splits:
        if not _keep(split, splits):
            continue
        path = manifest.path("scenes", split)
        for k, record in enumerate(get_field(load_json(path), "scenes", path, None, list)):
            try:
                scene = _scene(record)
            except (KeyError, TypeError) as err:
                raise error(path, f"scenes[{k}]", f"not a scene record ({type(err).__name__}: {err})") from None
            for obj, obj_record in zip(scene.objects, record["objects"], strict=True):
                descs = unique_descs(scene, obj)
                if not descs:
                    continue
                out.append(RefExample(
                    ref_id=obj.obj_id,
                    image_id=scene.image_id,
                    file_name=world_layout.coco_image(split, scene.image_id),
                    split=split,
                    sentences=["the " + d.words() for d in descs],
                    box_xywh=tuple(float(v) for v in obj_record["bbox"]),  # type: ignore[arg-type]
                    category_id=1 + SHAPES.index(obj.shape),
                ))
    return out
