"""Navigation metrics on hand-computable graphs and on real R2R val_seen paths in real Matterport scans."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import pytest

from clipvil.data.nav import load_nav_graphs, read_r2r, shortest_distances
from clipvil.metrics.nav import dtw_cost, navigation_scores, score_episode


@dataclass(frozen=True)
class Ref:
    scan: str
    path: tuple[str, ...]


@pytest.fixture
def line() -> dict[str, dict[str, float]]:
    """A -1- B -2- C -4- D, and E hanging off B at 1 m (off the reference path A, B, C)."""
    graph = nx.Graph()
    graph.add_weighted_edges_from([("A", "B", 1.0), ("B", "C", 2.0), ("C", "D", 4.0), ("B", "E", 1.0)])
    return shortest_distances(graph)


REF = ("A", "B", "C")  # goal C, shortest length 3


def test_perfect_path(line: dict) -> None:
    e = score_episode(["A", "B", "C"], REF, line)
    assert (e.trajectory_length, e.nav_error, e.success, e.oracle_success, e.spl) == (3.0, 0.0, 1.0, 1.0, 1.0)
    assert (e.dtw, e.ndtw, e.sdtw, e.steps, e.shortest_length) == (0.0, 1.0, 1.0, 2, 3.0)


def test_stop_at_start_fails_at_exactly_three_metres(line: dict) -> None:
    e = score_episode(["A"], REF, line)
    assert e.nav_error == 3.0 and e.success == 0.0 and e.oracle_success == 0.0  # SR needs NE < 3 (strict)
    # DTW: A aligned with A (0), B (1) and C (3) -> 4; nDTW = exp(-4 / (3 * 3)).
    assert e.dtw == 4.0 and e.ndtw == pytest.approx(math.exp(-4 / 9)) and e.sdtw == 0.0
    assert e.trajectory_length == 0.0 and e.spl == 0.0


def test_detour_and_overshoot(line: dict) -> None:
    back = score_episode(["A", "B", "C", "D", "C"], REF, line)  # overshoot to D, come back
    assert back.trajectory_length == 11.0 and back.nav_error == 0.0
    assert back.spl == pytest.approx(3 / 11)  # success * shortest / max(shortest, TL)
    assert back.dtw == 4.0 and back.sdtw == pytest.approx(math.exp(-4 / 9))  # D aligned with C costs 4
    over = score_episode(["A", "B", "C", "D"], REF, line)  # stop at D: 4 m from the goal
    assert over.nav_error == 4.0 and over.success == 0.0 and over.oracle_success == 1.0 and over.oracle_error == 0.0
    assert over.spl == 0.0 and over.sdtw == 0.0


def test_turning_in_place_repeats(line: dict) -> None:
    # E is 1 m from B. Merged, the path is A B E B C (DTW 1); with the repeat E counts twice (DTW 2).
    steps = [("A", 0.0, 0.0), ("B", 0.5, 0.0), ("E", 0.5, 0.0), ("E", 1.0, 0.0), ("B", 1.0, 0.0), ("C", 1.0, 0.0)]
    merged = score_episode(steps, REF, line)
    kept = score_episode(steps, REF, line, merge_repeats=False)
    assert merged.dtw == 1.0 and kept.dtw == 2.0
    assert merged.steps == kept.steps == 5 and merged.trajectory_length == 5.0


def test_r4r_grid_example() -> None:
    # The worked example of the DTW paper's reference code: a 3x4 grid with unit edges.
    graph = nx.relabel_nodes(nx.grid_graph([3, 4]), lambda node: f"{node[0]},{node[1]}")
    dist = shortest_distances(graph)
    pred, ref = ["0,0", "1,0", "2,0", "3,0"], ["0,0", "1,0", "2,1", "3,2"]
    assert dtw_cost(pred, ref, dist) == 3.0  # 0 + 0 + 1 + 2
    e = score_episode(pred, ref, dist)
    assert e.ndtw == pytest.approx(math.exp(-3 / (3 * 4))) and e.sdtw == e.ndtw  # NE 2 < 3: success
    assert score_episode(pred[:2], ref, dist).sdtw == 0.0  # NE 3: not a success


def test_summary_and_errors(line: dict) -> None:
    refs = {"1_0": Ref("s", REF), "1_1": Ref("s", REF)}
    scores = navigation_scores({"1_0": ["A", "B", "C"], "1_1": ["A"]}, refs, {"s": line})
    assert scores.summary["sr"] == 0.5 and scores.summary["ne"] == 1.5 and scores.summary["n"] == 2.0
    assert scores.summary["ndtw"] == pytest.approx((1 + math.exp(-4 / 9)) / 2)
    assert set(scores.to_dict(include_per_episode=True)["per_episode"]) == {"1_0", "1_1"}
    with pytest.raises(ValueError, match=r"1 instruction\(s\) without trajectory \(e.g. \['1_1'\]\)"):
        navigation_scores({"1_0": ["A"]}, refs, {"s": line})
    with pytest.raises(ValueError, match="instruction 1_1 .*starts at B, not at the reference start A"):
        navigation_scores({"1_0": ["A"], "1_1": ["B"]}, refs, {"s": line})
    with pytest.raises(ValueError, match="instruction 1_1 .*viewpoint Z is not in the distance table"):
        navigation_scores({"1_0": ["A"], "1_1": ["A", "Z"]}, refs, {"s": line})
    with pytest.raises(ValueError, match="instruction 1_0: no distances for scan s"):
        navigation_scores({"1_0": ["A"], "1_1": ["A"]}, refs, {})


def test_real_val_seen_paths(shared_data: Path) -> None:
    path = shared_data / "r2r" / "R2R_val_seen.json"
    scans = sorted({item.scan for item in read_r2r(path)})[:4]
    graphs = load_nav_graphs(shared_data / "clip-vil" / "connectivity", scans)
    items = {i.instr_id: i for i in read_r2r(path) if i.scan in scans}
    assert len(items) > 50
    distances = {scan: shortest_distances(graphs[scan]) for scan in scans}
    gt = navigation_scores({k: list(i.path) for k, i in items.items()}, items, distances)
    assert gt.summary["sr"] == 1.0 and gt.summary["spl"] == pytest.approx(1.0) and gt.summary["ndtw"] == 1.0
    assert gt.summary["ne"] == 0.0 and gt.summary["osr"] == 1.0
    stay = navigation_scores({k: [i.path[0]] for k, i in items.items()}, items, distances)
    for instr_id, item in items.items():
        episode = stay.per_episode[instr_id]
        assert episode.nav_error == pytest.approx(item.distance, abs=0.006)  # R2R's distance: 2 decimals
        assert episode.success == float(item.distance < 3.0)
        assert gt.per_episode[instr_id].trajectory_length == pytest.approx(item.distance, abs=0.006)
