"""Navigation data: R2R and RxR instruction files, and the Matterport3D connectivity graphs.

Formats (read as the originals are; every bad entry raises a ValueError naming the file and the entry):

- R2R (`R2R_<split>.json`): a JSON list of paths {path_id, scan, path: [viewpoint, ...], heading (radians),
  instructions: [str, ...], distance (metres, absent in test)}. Each instruction becomes one item with
  instr_id "<path_id>_<k>" (the convention of R2R-EnvDrop's evaluation). In R2R_test the path holds only
  the start viewpoint.
- RxR guide annotations (`rxr_<split>_guide.jsonl[.gz]`): one JSON object per line {instruction_id,
  path_id, scan, path, heading, instruction, language (e.g. "en-IN"), ...}; instr_id is str(instruction_id).
  A `.json` file holding a list of such objects (CLIP-ViL's preprocessed RxR files) is read too.
- Connectivity (`<scan>_connectivity.json[.gz]`): a JSON list with one entry per viewpoint {image_id,
  pose: 16 floats (4x4 row-major; x, y, z at 3, 7, 11), included, unobstructed: [bool per viewpoint],
  visible, height}. The graph links included viewpoints whose `unobstructed` flag is set, weighted by the
  3-D euclidean distance, exactly as Matterport3DSimulator / R2R-EnvDrop's load_nav_graphs builds it
  (viewpoints without any such link are not in the graph). Nodes carry `position` (np.ndarray [3]).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

RXR_FIELDS = ("instruction_id", "path_id", "scan", "path", "heading", "instruction", "language")
R2R_FIELDS = ("path_id", "scan", "path", "heading", "instructions")


@dataclass(frozen=True)
class NavInstruction:
    """One instruction with its path: the unit that navigation training and evaluation iterate over."""

    instr_id: str  # R2R: "<path_id>_<k>"; RxR: str(instruction_id)
    path_id: int
    scan: str  # Matterport3D scan id
    path: tuple[str, ...]  # viewpoint ids from start to goal (only the start in R2R test)
    heading: float  # initial heading, radians
    instruction: str
    language: str  # "en" for R2R; the BCP-47 tag of RxR ("en-IN", "hi-IN", "te-IN", "en-US")
    distance: float | None = None  # R2R's path length in metres, when given


def _open_text(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return f.read()
    return path.read_text(encoding="utf-8")


def _load_json(path: Path) -> Any:
    try:
        return json.loads(_open_text(path))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path.name}: invalid JSON ({err})") from err


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ----------------------------------------------------------------------------------------------- graphs


def read_scans(path: str | Path) -> list[str]:
    """The scan ids listed one per line in `scans.txt`."""
    return [line.strip() for line in _open_text(Path(path)).splitlines() if line.strip()]


def connectivity_file(connectivity_dir: str | Path, scan: str) -> Path:
    """`<dir>/<scan>_connectivity.json`, or the `.json.gz` beside it when only that exists."""
    base = Path(connectivity_dir) / f"{scan}_connectivity.json"
    for candidate in (base, base.with_name(base.name + ".gz")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{base}(.gz): no connectivity graph for scan {scan!r}")


def _check_viewpoint(name: str, index: int, item: object, n: int) -> dict[str, Any]:
    where = f"{name}: viewpoint {index}"
    if not isinstance(item, dict) or not isinstance(item.get("image_id"), str):
        raise ValueError(f"{where}: expected an object with a string image_id")
    where = f"{name}: viewpoint {index} ({item['image_id']})"
    for key in ("pose", "included", "unobstructed"):
        if key not in item:
            raise ValueError(f"{where}: missing field {key!r}")
    pose, links = item["pose"], item["unobstructed"]
    if not isinstance(pose, list) or len(pose) != 16 or not all(_is_number(v) for v in pose):
        raise ValueError(f"{where}: pose must be 16 numbers")
    if not isinstance(links, list) or len(links) != n:
        raise ValueError(f"{where}: unobstructed must have one flag per viewpoint ({n})")
    return item


def _distance(a: Sequence[float], b: Sequence[float]) -> float:
    """Euclidean distance of two poses' translations, the same float expression as the original code."""
    return ((a[3] - b[3]) ** 2 + (a[7] - b[7]) ** 2 + (a[11] - b[11]) ** 2) ** 0.5


def load_nav_graph(path: str | Path) -> nx.Graph:
    """The navigation graph of one scan from its connectivity file (.json or .json.gz)."""
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path.name}: expected a JSON list of viewpoints")
    items = [_check_viewpoint(path.name, i, item, len(data)) for i, item in enumerate(data)]
    graph = nx.Graph()
    for i, item in enumerate(items):
        if not item["included"]:
            continue
        for j, linked in enumerate(item["unobstructed"]):
            if not (linked and items[j]["included"]):
                continue
            if not items[j]["unobstructed"][i]:
                raise ValueError(
                    f"{path.name}: viewpoint {item['image_id']} links to {items[j]['image_id']} but not back "
                    "(the graph must be undirected)"
                )
            graph.add_edge(item["image_id"], items[j]["image_id"], weight=_distance(item["pose"], items[j]["pose"]))
    positions = {item["image_id"]: np.array([item["pose"][3], item["pose"][7], item["pose"][11]])  # [3]
                 for item in items if item["image_id"] in graph}
    nx.set_node_attributes(graph, positions, name="position")
    return graph


def load_nav_graphs(connectivity_dir: str | Path, scans: Iterable[str] | None = None) -> dict[str, nx.Graph]:
    """{scan: graph} for `scans` (default: all of `scans.txt` in the directory).

    When `scans.txt` exists, a scan not listed there is an error (a typo, or a file from another dataset).
    """
    directory = Path(connectivity_dir)
    listed = read_scans(directory / "scans.txt") if (directory / "scans.txt").is_file() else None
    wanted = list(scans) if scans is not None else listed
    if wanted is None:
        raise FileNotFoundError(f"{directory}/scans.txt: not found; pass the scans to load")
    if listed is not None:
        unknown = sorted(set(wanted) - set(listed))
        if unknown:
            raise ValueError(f"{directory}/scans.txt: unknown scan(s) {unknown[:5]} ({len(unknown)} in all)")
    return {scan: load_nav_graph(connectivity_file(directory, scan)) for scan in dict.fromkeys(wanted)}


def shortest_distances(graph: nx.Graph) -> dict[str, dict[str, float]]:
    """All-pairs shortest-path lengths in metres, d[a][b] (what the R2R/RxR evaluations look up)."""
    return {source: dict(lengths) for source, lengths in nx.all_pairs_dijkstra_path_length(graph)}


# ----------------------------------------------------------------------------------------- instructions


def _check_common(where: str, entry: Mapping[str, Any], fields: Sequence[str]) -> None:
    for key in fields:
        if key not in entry:
            raise ValueError(f"{where}: missing field {key!r}")
    if not isinstance(entry["scan"], str) or not entry["scan"]:
        raise ValueError(f"{where}: scan must be a non-empty string")
    path = entry["path"]
    if not isinstance(path, list) or not path or not all(isinstance(v, str) and v for v in path):
        raise ValueError(f"{where}: path must be a non-empty list of viewpoint ids")
    if not _is_number(entry["heading"]):
        raise ValueError(f"{where}: heading must be a number (radians)")
    if not isinstance(entry["path_id"], int) or isinstance(entry["path_id"], bool):
        raise ValueError(f"{where}: path_id must be an integer")


def _check_instruction(where: str, text: object) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: empty instruction")
    return text


def check_against_graphs(items: Iterable[NavInstruction], graphs: Mapping[str, nx.Graph], source: str) -> None:
    """Every item's scan has a graph and every viewpoint of its path is a node of it (errors name the item)."""
    for item in items:
        graph = graphs.get(item.scan)
        if graph is None:
            raise ValueError(f"{source}: instruction {item.instr_id}: unknown scan {item.scan!r} (no graph loaded)")
        for viewpoint in item.path:
            if viewpoint not in graph:
                raise ValueError(
                    f"{source}: instruction {item.instr_id}: viewpoint {viewpoint} is not in the graph of "
                    f"scan {item.scan}"
                )


def _unique(items: list[NavInstruction], source: str) -> list[NavInstruction]:
    seen: set[str] = set()
    for item in items:
        if item.instr_id in seen:
            raise ValueError(f"{source}: duplicate instruction id {item.instr_id}")
        seen.add(item.instr_id)
    return items


def read_r2r(path: str | Path, graphs: Mapping[str, nx.Graph] | None = None) -> list[NavInstruction]:
    """One NavInstruction per (path, instruction) of an R2R file; checked against `graphs` when given."""
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path.name}: expected a JSON list of paths")
    items: list[NavInstruction] = []
    for index, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise ValueError(f"{path.name}: entry {index}: expected an object")
        where = f"{path.name}: entry {index} (path_id {entry.get('path_id')})"
        _check_common(where, entry, R2R_FIELDS)
        instructions = entry["instructions"]
        if not isinstance(instructions, list) or not instructions:
            raise ValueError(f"{where}: instructions must be a non-empty list")
        distance = entry.get("distance")
        if distance is not None and not _is_number(distance):
            raise ValueError(f"{where}: distance must be a number")
        for k, text in enumerate(instructions):
            items.append(NavInstruction(
                instr_id=f"{entry['path_id']}_{k}", path_id=entry["path_id"], scan=entry["scan"],
                path=tuple(entry["path"]), heading=float(entry["heading"]),
                instruction=_check_instruction(f"{where}: instruction {k}", text), language="en",
                distance=None if distance is None else float(distance),
            ))
    if graphs is not None:
        check_against_graphs(items, graphs, path.name)
    return _unique(items, path.name)


def _rxr_entries(path: Path) -> list[tuple[str, Any]]:
    """(location, parsed object) of each entry: a JSON list (.json[.gz]) or one object per line (.jsonl[.gz])."""
    if path.name.removesuffix(".gz").endswith(".json"):
        data = _load_json(path)
        if not isinstance(data, list):
            raise ValueError(f"{path.name}: expected a JSON list of instructions")
        return [(f"entry {i}", entry) for i, entry in enumerate(data)]
    entries = []
    for number, line in enumerate(_open_text(path).splitlines(), start=1):
        if line.strip():
            try:
                entries.append((f"line {number}", json.loads(line)))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path.name}: line {number}: invalid JSON ({err})") from err
    return entries


def _language_matches(tag: str, languages: Collection[str]) -> bool:
    return tag in languages or tag.split("-")[0] in languages


def read_rxr(
    path: str | Path, graphs: Mapping[str, nx.Graph] | None = None, languages: Collection[str] | None = None
) -> list[NavInstruction]:
    """The RxR guide annotations of a file, optionally only `languages` (full tags like "en-IN" or primary
    subtags like "en"); checked against `graphs` when given."""
    path = Path(path)
    items: list[NavInstruction] = []
    for location, entry in _rxr_entries(path):
        if not isinstance(entry, dict):
            raise ValueError(f"{path.name}: {location}: expected an object")
        where = f"{path.name}: {location} (instruction_id {entry.get('instruction_id')})"
        _check_common(where, entry, RXR_FIELDS)
        if not isinstance(entry["instruction_id"], int) or isinstance(entry["instruction_id"], bool):
            raise ValueError(f"{where}: instruction_id must be an integer")
        if not isinstance(entry["language"], str) or not entry["language"]:
            raise ValueError(f"{where}: language must be a non-empty string")
        if languages is not None and not _language_matches(entry["language"], languages):
            continue
        items.append(NavInstruction(
            instr_id=str(entry["instruction_id"]), path_id=entry["path_id"], scan=entry["scan"],
            path=tuple(entry["path"]), heading=float(entry["heading"]),
            instruction=_check_instruction(where, entry["instruction"]), language=entry["language"],
        ))
    if graphs is not None:
        check_against_graphs(items, graphs, path.name)
    return _unique(items, path.name)
