"""CLS (coverage weighted by length score, Jain et al. 2019) by hand on a small graph, and against a port of
CLIP-ViL's RxR evaluation (rxr_src/eval.py `cls`) on paths of a real Matterport scan."""

from __future__ import annotations

import math
import random
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from clipvil.data.nav import load_nav_graphs, shortest_distances
from clipvil.metrics.nav import cls_score, navigation_scores, score_episode


@pytest.fixture
def line() -> dict[str, dict[str, float]]:
    """A -1- B -2- C -4- D, and E hanging off B at 1 m."""
    graph = nx.Graph()
    graph.add_weighted_edges_from([("A", "B", 1.0), ("B", "C", 2.0), ("C", "D", 4.0), ("B", "E", 1.0)])
    return shortest_distances(graph)


def test_cls_by_hand(line: dict) -> None:
    ref = ["A", "B", "C"]  # PL(R) = 3
    assert cls_score(["A", "B", "C"], ref, line) == pytest.approx(1.0)  # full coverage, EPL = PL = 3
    stop = (1 + math.exp(-1 / 3) + math.exp(-1)) / 3  # C is 3 m, B 1 m from A
    assert cls_score(["A"], ref, line) == pytest.approx(stop * 0.5)  # LS = EPL / (EPL + EPL)
    cov = (1 + 1 + math.exp(-2 / 3)) / 3  # C is 2 m from B: the nearest of A, B, E
    epl = cov * 3
    assert cls_score(["A", "B", "E"], ref, line) == pytest.approx(cov * epl / (epl + abs(epl - 2.0)))
    over = cls_score(["A", "B", "C", "D", "C"], ref, line)  # full coverage, 11 m walked for an EPL of 3
    assert over == pytest.approx(3 / (3 + 8))
    assert cls_score(["A"], ["A"], line) == 1.0 and cls_score(["A", "B"], ["A"], line) == 0.0  # EPL 0
    assert score_episode(["A", "B", "E"], ref, line).cls == pytest.approx(cov * epl / (epl + abs(epl - 2.0)))


def _clipvil_cls(dist: dict, prediction: list[str], reference: list[str]) -> float:
    """rxr_src/eval.py's cls, ported (error margin 3 m; lengths over consecutive viewpoints)."""
    def length(nodes: list[str]) -> float:
        return float(np.sum([dist[a][b] for a, b in zip(nodes[:-1], nodes[1:])]))  # noqa: RUF007 (the port)

    coverage = np.mean([np.exp(-np.min([dist[u][v] for v in prediction]) / 3.0) for u in reference])
    expected = coverage * length(reference)
    return float(coverage * (expected / (expected + np.abs(expected - length(prediction)))))


def test_cls_matches_clipvil_on_a_real_scan(shared_data: Path) -> None:
    graph = load_nav_graphs(shared_data / "clip-vil/connectivity", ["17DRP5sb8fy"])["17DRP5sb8fy"]
    dist = shortest_distances(graph)
    rng = random.Random(0)
    nodes = sorted(graph.nodes)
    refs, trajs = {}, {}
    for k in range(20):
        a, b, c = rng.sample(nodes, 3)
        ref = nx.shortest_path(graph, a, b, weight="weight")
        walk = [a] + nx.shortest_path(graph, a, c, weight="weight")[1:]  # a wrong goal: partial coverage
        walk = walk + [walk[-1]] * rng.randint(0, 2)  # turns in place repeat a viewpoint
        assert cls_score(walk, ref, dist) == pytest.approx(_clipvil_cls(dist, walk, ref), rel=1e-12)
        refs[str(k)], trajs[str(k)] = type("Ref", (), {"scan": "17DRP5sb8fy", "path": ref})(), walk
    summary = navigation_scores(trajs, refs, {"17DRP5sb8fy": dist}).summary
    assert summary["cls"] == pytest.approx(np.mean([_clipvil_cls(dist, trajs[k], refs[k].path) for k in refs]))
