"""The embedded navigation world: real Matterport3D connectivity graphs, synthetic objects, rendered views,
and R2R / RxR instruction files that name what a path passes and where it turns.

    make_nav_world("data/nav_world", connectivity="../shared/data/clip-vil/connectivity")

- Scans: a handful of real graphs (positions and navigability from the connectivity files). Train and
  val_seen paths come from the `train_scans`, val_unseen paths from the `unseen_scans` (R2R's split rule).
- Objects: one per viewpoint, standing 1.0-1.5 m away from it in a random direction, 0.3 m below the camera,
  radius 0.22 m, with a (shape, colour) pair unique within the scan (6 shapes x 8 colours), so "the red
  star" names one place of the scan.
- Views: `views/<scan>/<viewpoint>/<i>.jpg`, i = 0..35, rendered by clipvil.data.synthetic.nav_render (walls
  coloured by 4 m regions of the scan, a checkered floor, the objects in view smaller with distance).
  Extract them with `clipvil extract --preset views --pooled --dtype float32 --images DIR/views`.
- Paths: shortest paths of 4-6 viewpoints between random viewpoints, with a random start heading.
  Instructions: the turn to make at the start (relative to the start heading) and at every viewpoint where
  the path bends by more than 45 deg, the object of every viewpoint passed, and the goal's object:
  "turn left, walk past the red star, turn right, stop at the blue cross". Three per path (R2R) with
  varied phrasing; for RxR one per path and language (English, Hindi, Telugu) through a phrase table.
- Files: `R2R_{train,val_seen,val_unseen}.json`, `rxr/rxr_{train,val_seen,val_unseen}_guide.jsonl`,
  `aug_paths.json` (more sampled paths of the train scans, R2R format, for back-translation),
  `train_vocab.txt` (EnvDrop's vocabulary of the R2R train instructions), `connectivity/` (the scans'
  files and scans.txt), `objects.json`, `manifest.json` (the spec: a directory is reused for the same spec
  and refused for another).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from clipvil.common.atomic import atomic_write_json, atomic_write_text
from clipvil.data.nav import connectivity_file, load_nav_graphs
from clipvil.data.nav_env import N_VIEWS, direction
from clipvil.data.nav_text import build_envdrop_vocab
from clipvil.data.synthetic.nav_render import Look, NavObject, render_view
from clipvil.data.synthetic.scene import COLORS, SHAPES

NAV_WORLD_VERSION = 1
BUILDING = ".building"  # marks a world being written (its spec); the manifest, written last, replaces it
log = logging.getLogger(__name__)
TRAIN_SCANS = ("8194nk5LbLH", "pLe4wQe7qrG", "HxpKQynjfin", "Pm6F8kyY3z2")
UNSEEN_SCANS = ("2t7WUuJeko7", "gYvKGZ5eRqb")
RXR_LANGUAGES = {"en": "en-IN", "hi": "hi-IN", "te": "te-IN"}
_TURN = math.radians(45.0)

# phrase table: words and phrase patterns per language ({x} = the object's name)
PHRASES: dict[str, dict[str, Any]] = {
    "en": {"colors": {c: c for c in COLORS}, "shapes": {s: s for s in SHAPES},
           "name": "the {color} {shape}", "forward": ["walk forward", "go straight"],
           "left": ["turn left", "go left"], "right": ["turn right", "go right"],
           "around": ["turn around"], "past": ["walk past {x}", "go past {x}", "pass {x}"],
           "stop": ["stop at {x}", "wait at {x}", "stop next to {x}"], "join": ", ", "end": "."},
    "hi": {"colors": {"red": "लाल", "orange": "नारंगी", "yellow": "पीला", "green": "हरा", "blue": "नीला",
                      "purple": "बैंगनी", "white": "सफ़ेद", "black": "काला"},
           "shapes": {"circle": "गोला", "square": "चौकोर", "triangle": "त्रिकोण", "diamond": "हीरा",
                      "star": "तारा", "cross": "क्रॉस"},
           "name": "{color} {shape}", "forward": ["सीधे चलिए"], "left": ["बाएं मुड़िए"], "right": ["दाएं मुड़िए"],
           "around": ["पीछे मुड़िए"], "past": ["{x} के पास से गुजरिए"], "stop": ["{x} के पास रुकिए"],
           "join": ", ", "end": "।"},
    "te": {"colors": {"red": "ఎరుపు", "orange": "నారింజ", "yellow": "పసుపు", "green": "ఆకుపచ్చ", "blue": "నీలం",
                      "purple": "ఊదా", "white": "తెలుపు", "black": "నలుపు"},
           "shapes": {"circle": "వృత్తం", "square": "చతురస్రం", "triangle": "త్రిభుజం", "diamond": "వజ్రం",
                      "star": "నక్షత్రం", "cross": "శిలువ"},
           "name": "{color} {shape}", "forward": ["ముందుకు నడవండి"], "left": ["ఎడమకు తిరగండి"],
           "right": ["కుడికి తిరగండి"], "around": ["వెనుకకు తిరగండి"], "past": ["{x} దాటి నడవండి"],
           "stop": ["{x} దగ్గర ఆగండి"], "join": ", ", "end": "."},
}


@dataclass(frozen=True)
class NavWorldSpec:
    """Everything that decides the files of a navigation world."""

    seed: int = 0
    train_scans: tuple[str, ...] = TRAIN_SCANS
    unseen_scans: tuple[str, ...] = UNSEEN_SCANS
    train_paths: int = 60  # paths per train scan
    val_seen_paths: int = 10  # paths per train scan for val_seen
    val_unseen_paths: int = 20  # paths per unseen scan
    aug_paths: int = 120  # augmented paths per train scan (back-translation)
    width: int = 112  # view image size (4:3 like MatterSim's 640x480)
    height: int = 84
    languages: tuple[str, ...] = ("en", "hi", "te")  # RxR languages (keys of PHRASES)
    version: int = NAV_WORLD_VERSION

    def __post_init__(self) -> None:
        if set(self.train_scans) & set(self.unseen_scans) or not self.train_scans or not self.unseen_scans:
            raise ValueError("NavWorldSpec: train and unseen scans must be non-empty and disjoint")
        unknown = sorted(set(self.languages) - set(PHRASES))
        if unknown or not self.languages:
            raise ValueError(f"NavWorldSpec: languages {unknown} have no phrase table; known: {sorted(PHRASES)}")
        if min(self.train_paths, self.val_seen_paths, self.val_unseen_paths) < 1 or self.aug_paths < 0:
            raise ValueError("NavWorldSpec: path counts must be positive")
        if not (32 <= self.height <= self.width <= 1024):
            raise ValueError(f"NavWorldSpec: view size {self.width}x{self.height} outside 32..1024 (width >= height)")


@dataclass
class PathRecord:
    """A sampled path and its instructions (R2R fields)."""

    path_id: int
    scan: str
    path: list[str]
    heading: float
    distance: float
    instructions: list[str] = field(default_factory=list)
    by_language: dict[str, str] = field(default_factory=dict)


def _rng(seed: int, *parts: str) -> np.random.Generator:
    codes = [int.from_bytes(p.encode()[:8].ljust(8, b"\0"), "little") for p in parts]
    return np.random.default_rng([seed, *codes])


def place_objects(graph: nx.Graph, rng: np.random.Generator, start_id: int = 0) -> dict[str, NavObject]:
    """One object per viewpoint (module docstring), {viewpoint: object}."""
    nodes = sorted(graph.nodes)
    kinds = [(s, c) for s in SHAPES for c in COLORS]
    if len(nodes) > len(kinds):
        raise ValueError(f"scan with {len(nodes)} viewpoints: more than {len(kinds)} distinct objects needed")
    order = rng.permutation(len(kinds))
    out = {}
    for k, vp in enumerate(nodes):
        shape, color = kinds[int(order[k])]
        angle, dist = rng.uniform(0, 2 * math.pi), rng.uniform(1.0, 1.5)
        x, y, z = (float(v) for v in graph.nodes[vp]["position"])
        out[vp] = NavObject(start_id + k, shape, color, (x + dist * math.sin(angle), y + dist * math.cos(angle),
                                                          z - 0.3), 0.22, float(rng.uniform(0, 360)))
    return out


def sample_paths(graph: nx.Graph, rng: np.random.Generator, n: int, min_nodes: int = 4, max_nodes: int = 6
                 ) -> list[tuple[list[str], float]]:
    """n (shortest path, start heading) pairs with min_nodes..max_nodes viewpoints (distinct pairs when
    the scan has enough)."""
    nodes = sorted(graph.nodes)
    paths = dict(nx.all_pairs_dijkstra_path(graph))
    pairs = [(a, b) for a in nodes for b in nodes if min_nodes <= len(paths[a][b]) <= max_nodes]
    if not pairs:
        raise ValueError(f"no shortest path of {min_nodes}..{max_nodes} viewpoints in the scan")
    picks = rng.permutation(len(pairs))
    chosen = [pairs[int(picks[k % len(pairs)])] for k in range(n)]
    return [(list(paths[a][b]), float(rng.uniform(0, 2 * math.pi))) for a, b in chosen]


def _turn(angle: float) -> str | None:
    """'left' / 'right' / 'around' / None (straight on) for a relative heading change (radians)."""
    rel = math.atan2(math.sin(angle), math.cos(angle))
    if abs(rel) > math.pi - _TURN:
        return "around"
    if rel > _TURN:
        return "right"  # headings grow to the right
    if rel < -_TURN:
        return "left"
    return None


def path_events(graph: nx.Graph, path: Sequence[str], heading: float) -> list[tuple[str, str | None]]:
    """The path as events: ("turn", left|right|around), ("forward", None), ("past", vp), ("stop", goal)."""
    events: list[tuple[str, str | None]] = []
    facing = heading
    for k in range(len(path) - 1):
        h, _ = direction(graph, path[k], path[k + 1])
        turn = _turn(h - facing)
        if turn is not None:
            events.append(("turn", turn))
        elif k == 0:
            events.append(("forward", None))
        facing = h
        if k + 1 < len(path) - 1:
            events.append(("past", path[k + 1]))
    events.append(("stop", path[-1]))
    return events


def describe(events: Sequence[tuple[str, str | None]], objects: dict[str, NavObject], language: str,
             rng: np.random.Generator) -> str:
    """One instruction for the events in `language` (phrases drawn from the table)."""
    table = PHRASES[language]

    def pick(key: str) -> str:
        options = table[key]
        return str(options[int(rng.integers(len(options)))])

    def name(vp: str) -> str:
        obj = objects[vp]
        return table["name"].format(color=table["colors"][obj.color], shape=table["shapes"][obj.shape])

    parts = []
    for kind, arg in events:
        if kind == "turn":
            parts.append(pick(str(arg)))
        elif kind == "forward":
            parts.append(pick("forward"))
        else:
            parts.append(pick(kind).format(x=name(str(arg))))
    text = table["join"].join(parts) + table["end"]
    return text[0].upper() + text[1:] if language == "en" else text


def _look(graph: nx.Graph, vp: str, scan_rng_seed: int) -> Look:
    x, y, z = (float(v) for v in graph.nodes[vp]["position"])
    region = _rng(scan_rng_seed, f"{math.floor(x / 4)}", f"{math.floor(y / 4)}")
    wall = tuple(int(v) for v in region.integers(70, 200, 3))
    floor = tuple(int(v) for v in _rng(scan_rng_seed, "floor").integers(60, 150, 3))
    return Look(wall, floor, z - 1.5, float(region.uniform(10, 30)))  # type: ignore[arg-type]


def render_scan(graph: nx.Graph, scan: str, objects: dict[str, NavObject], spec: NavWorldSpec, root: Path) -> int:
    """Writes views/<scan>/<vp>/<i>.jpg for every viewpoint; returns the number of images."""
    seed = int(_rng(spec.seed, scan, "look").integers(2**31))
    nearby = list(objects.values())
    count = 0
    for vp in sorted(graph.nodes):
        folder = root / "views" / scan / vp
        folder.mkdir(parents=True, exist_ok=True)
        camera = tuple(float(v) for v in graph.nodes[vp]["position"])
        look, rng = _look(graph, vp, seed), _rng(spec.seed, scan, vp)
        for view in range(N_VIEWS):
            image = render_view(camera, view, nearby, look, spec.width, spec.height, rng)
            image.save(folder / f"{view}.jpg", "JPEG", quality=90)
            count += 1
    return count


def _records(graph: nx.Graph, scan: str, objects: dict[str, NavObject], spec: NavWorldSpec, split: str,
             n: int, first_id: int) -> list[PathRecord]:
    rng = _rng(spec.seed, scan, split)
    out = []
    for k, (path, heading) in enumerate(sample_paths(graph, rng, n)):
        events = path_events(graph, path, heading)
        length = float(sum(graph[a][b]["weight"] for a, b in itertools.pairwise(path)))
        rec = PathRecord(first_id + k, scan, path, heading, length)
        rec.instructions = [describe(events, objects, "en", rng) for _ in range(3)]
        rec.by_language = {lang: describe(events, objects, lang, rng) for lang in spec.languages}
        out.append(rec)
    return out


def _r2r(records: Sequence[PathRecord]) -> list[dict[str, Any]]:
    return [{"distance": r.distance, "scan": r.scan, "path_id": r.path_id, "path": r.path, "heading": r.heading,
             "instructions": r.instructions} for r in records]


def _rxr(records: Sequence[PathRecord], split: str) -> str:
    lines = []
    for r in records:
        for k, (lang, text) in enumerate(sorted(r.by_language.items())):
            lines.append(json.dumps({"instruction_id": r.path_id * 10 + k, "path_id": r.path_id, "split": split,
                                     "scan": r.scan, "heading": r.heading, "path": r.path,
                                     "language": RXR_LANGUAGES[lang], "instruction": text, "annotator_id": 0,
                                     "edit_distance": 0.0}, ensure_ascii=False))
    return "".join(line + "\n" for line in lines)


def _copy_connectivity(src: Path, scans: Sequence[str], dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for scan in scans:
        f = connectivity_file(src, scan)
        shutil.copyfile(f, dst / f.name)
    atomic_write_text(dst / "scans.txt", "".join(f"{s}\n" for s in scans))


def _spec_json(spec: NavWorldSpec) -> dict[str, Any]:
    data = asdict(spec)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def make_nav_world(out: str | Path, connectivity: str | Path, spec: NavWorldSpec | None = None,
                   render: bool = True) -> dict[str, Any]:
    """Writes the world (module docstring) into `out`; returns the manifest. A directory that already holds
    the same spec is reused as it is; one with another spec (or foreign files) is refused."""
    spec = spec or NavWorldSpec()
    root, source = Path(out), Path(connectivity)
    manifest_path = root / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("spec") != _spec_json(spec):
            raise ValueError(f"{root}: holds a navigation world of another spec; pick another --out or delete it")
        if manifest.get("rendered") or not render:
            return manifest
    elif (root / BUILDING).is_file():  # a build killed before its manifest: ours to start again
        if (root / BUILDING).read_text(encoding="utf-8") != json.dumps(_spec_json(spec), sort_keys=True):
            raise ValueError(f"{root}: an unfinished navigation world of another spec; pick another --out or "
                             "delete it")
        log.info("%s: an unfinished navigation world (killed while it was written): writing it again", root)
    elif root.is_dir() and any(root.iterdir()):
        raise ValueError(f"{root}: not empty and not a navigation world; pick an empty or new directory")
    scans = (*spec.train_scans, *spec.unseen_scans)
    graphs = load_nav_graphs(source, scans)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / BUILDING, json.dumps(_spec_json(spec), sort_keys=True))
    _copy_connectivity(source, scans, root / "connectivity")
    objects = {scan: place_objects(graphs[scan], _rng(spec.seed, scan, "objects"), 1000 * i)
               for i, scan in enumerate(scans)}
    splits: dict[str, list[PathRecord]] = {"train": [], "val_seen": [], "val_unseen": [], "aug": []}
    plan = [("train", spec.train_scans, spec.train_paths), ("val_seen", spec.train_scans, spec.val_seen_paths),
            ("val_unseen", spec.unseen_scans, spec.val_unseen_paths), ("aug", spec.train_scans, spec.aug_paths)]
    for s, (split, split_scans, n) in enumerate(plan):
        for i, scan in enumerate(split_scans):
            if n:
                first = 100_000 * s + 1000 * scans.index(scan)
                splits[split] += _records(graphs[scan], scan, objects[scan], spec, split, n, first)
    for split in ("train", "val_seen", "val_unseen"):
        atomic_write_json(root / f"R2R_{split}.json", _r2r(splits[split]))
        (root / "rxr").mkdir(exist_ok=True)
        atomic_write_text(root / "rxr" / f"rxr_{split}_guide.jsonl", _rxr(splits[split], split))
    atomic_write_json(root / "aug_paths.json", _r2r(splits["aug"]))
    vocab = build_envdrop_vocab((t for r in splits["train"] for t in r.instructions), min_count=5)
    atomic_write_text(root / "train_vocab.txt", "".join(f"{w}\n" for w in vocab))
    atomic_write_json(root / "objects.json", {scan: {vp: asdict(o) for vp, o in objs.items()}
                                              for scan, objs in objects.items()})
    images = sum(render_scan(graphs[scan], scan, objects[scan], spec, root) for scan in scans) if render else 0
    manifest = {"spec": _spec_json(spec), "rendered": render, "images": images,
                "viewpoints": {scan: graphs[scan].number_of_nodes() for scan in scans},
                "counts": {split: {"paths": len(recs), "instructions": sum(len(r.instructions) for r in recs)}
                           for split, recs in splits.items()}}
    atomic_write_json(manifest_path, manifest)
    (root / BUILDING).unlink()  # the manifest marks the world finished
    return manifest
