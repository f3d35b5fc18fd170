"""The graph-only navigation environment, against angles computed here from the real poses."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from clipvil.data.nav import NavInstruction, load_nav_graph, read_r2r
from clipvil.data.nav_env import (
    IGNORE,
    NavEnv,
    angle_feature,
    make_candidates,
    panorama_angle_features,
    snap_view,
)

SCAN = "17DRP5sb8fy"
VIEWPOINTS = ("10c252c90fa24ef3b698c6f54d984c5c", "6800f98e9e67463e9928a4253253bc2f",
              "0f37bd0737e349de9d536263a4bdd60d")
DEG = math.pi / 180


@pytest.fixture(scope="module")
def raw(shared_data: Path) -> dict[str, dict]:
    path = shared_data / "clip-vil" / "connectivity" / f"{SCAN}_connectivity.json.gz"
    with gzip.open(path, "rt") as f:
        return {v["image_id"]: v for v in json.load(f)}


@pytest.fixture(scope="module")
def graph(shared_data: Path) -> nx.Graph:
    return load_nav_graph(shared_data / "clip-vil" / "connectivity" / f"{SCAN}_connectivity.json.gz")


@pytest.fixture(scope="module")
def features(graph: nx.Graph) -> dict[tuple[str, str], np.ndarray]:
    rng = np.random.default_rng(0)
    return {(SCAN, vp): rng.standard_normal((36, 8)).astype(np.float32) for vp in graph}


def _ep(heading: float) -> NavInstruction:
    return NavInstruction("1_0", 1, SCAN, (VIEWPOINTS[0], VIEWPOINTS[1]), heading, "go", "en")


def _by_hand(raw: dict[str, dict], a: str, b: str) -> tuple[float, float]:
    """Heading (0 = +y, clockwise) and elevation from the pose translations at indices 3, 7, 11."""
    pa, pb = raw[a]["pose"], raw[b]["pose"]
    dx, dy, dz = pb[3] - pa[3], pb[7] - pa[7], pb[11] - pa[11]
    return math.atan2(dx, dy), math.atan2(dz, math.hypot(dx, dy))


def _wrap(angle: float) -> float:
    return math.remainder(angle, 2 * math.pi)


@pytest.mark.parametrize("viewpoint", VIEWPOINTS)
def test_candidate_angles_and_views_match_the_poses(raw: dict, graph: nx.Graph, viewpoint: str) -> None:
    index = list(raw)
    neighbours = {vid for j, vid in enumerate(index)
                  if raw[viewpoint]["unobstructed"][j] and raw[vid]["included"]}
    cands = make_candidates(graph, viewpoint)
    assert {c.viewpoint for c in cands} == neighbours
    for c in cands:
        heading, elevation = _by_hand(raw, viewpoint, c.viewpoint)
        assert _wrap(c.heading - heading) == pytest.approx(0.0, abs=1e-5)
        assert c.elevation == pytest.approx(elevation, abs=1e-5)
        # the closest view: nearest 30-degree heading, nearest elevation level among -30, 0, +30
        heading_index = round((heading % (2 * math.pi)) / (30 * DEG)) % 12
        level = min(range(3), key=lambda lv: abs(elevation - (lv - 1) * 30 * DEG))
        assert c.view == 12 * level + heading_index


def test_candidate_order_is_first_appearance_over_views(raw: dict, graph: nx.Graph) -> None:
    # a neighbour is first seen in the lowest-numbered view whose heading is within 40 degrees of it
    viewpoint = VIEWPOINTS[0]
    cands = make_candidates(graph, viewpoint)

    def first_view(vid: str) -> int:
        heading = _by_hand(raw, viewpoint, vid)[0]
        return min(k for k in range(12) if abs(_wrap(heading - k * 30 * DEG)) <= 40 * DEG)

    firsts = [first_view(c.viewpoint) for c in cands]
    assert firsts == sorted(firsts)


def test_hand_built_graph_views() -> None:
    graph = nx.Graph()
    graph.add_node("o", position=np.array([0.0, 0.0, 1.5]))
    spots = {  # name: (x, y, z) -> expected view
        "north": ((0.0, 2.0, 1.5), 12),  # heading 0, level
        "east_up": ((2.0, 0.0, 2.7), 27),  # heading 90 (index 3), elevation 31 deg -> +30 level
        "south_down": ((0.0, -1.0, 0.5), 6),  # heading 180 (index 6), elevation -45 deg -> -30 level
        "nnw": ((-math.sin(20 * DEG), math.cos(20 * DEG), 1.5), 23),  # heading -20 -> 330 (index 11), level
    }
    for name, (pos, _) in spots.items():
        graph.add_node(name, position=np.array(pos))
        graph.add_edge("o", name, weight=1.0)
    graph.add_node("above", position=np.array([0.0, 0.0, 3.0]))
    graph.add_edge("o", "above", weight=1.5)  # no horizontal offset: never navigable (MatterSim)
    cands = {c.viewpoint: c for c in make_candidates(graph, "o")}
    assert set(cands) == set(spots)
    for name, (_, view) in spots.items():
        assert cands[name].view == view, name
    assert cands["east_up"].heading == pytest.approx(math.pi / 2)
    assert cands["east_up"].elevation == pytest.approx(math.atan2(1.2, 2.0), rel=1e-6)


def test_angle_feature_values() -> None:
    feat = angle_feature(math.pi / 2, -math.pi / 6)
    assert feat.shape == (128,) and feat.dtype == np.float32
    np.testing.assert_allclose(feat[:4], [1.0, 0.0, -0.5, math.sqrt(3) / 2], atol=1e-7)
    np.testing.assert_array_equal(feat, np.tile(feat[:4], 32))
    pano = panorama_angle_features(14)  # agent faces heading 60 deg, level
    assert pano.shape == (36, 128)
    expected = [math.sin(-60 * DEG), math.cos(-60 * DEG), -0.5, math.sqrt(3) / 2]
    np.testing.assert_allclose(pano[0, :4], expected, atol=1e-6)
    np.testing.assert_allclose(pano[26, :4], [0.0, 1.0, 0.5, math.sqrt(3) / 2], atol=1e-6)  # heading 60, up
    assert snap_view(3.506) == 12 + 7 and snap_view(-0.1) == 12 and snap_view(0.2, -0.4) == 0
    assert snap_view(45 * DEG + 1e-9) == 12 + 2 and snap_view(2 * math.pi - 1e-9, 0.6) == 24  # half up, wraps


def test_observation_features(graph: nx.Graph, features: dict) -> None:
    env = NavEnv({SCAN: graph}, features)
    ep = _ep(3.506)
    obs = env.reset([ep])
    agent_heading = 7 * 30 * DEG  # 3.506 rad = 200.9 deg snaps to 210
    assert obs.view_index[0] == 19 and obs.heading[0] == pytest.approx(agent_heading)
    feats = features[(SCAN, VIEWPOINTS[0])]
    np.testing.assert_array_equal(obs.panorama[0, :, :8], feats)
    np.testing.assert_allclose(obs.panorama[0, 5, 8:12], [math.sin(-60 * DEG), math.cos(-60 * DEG), -0.5,
                                                          math.cos(30 * DEG)], atol=1e-6)
    n = obs.n_candidates[0]
    assert n == 3 and obs.candidates.shape == (1, 4, 8 + 128)
    for k, vid in enumerate(obs.candidate_viewpoints[0]):
        cand = next(c for c in make_candidates(graph, VIEWPOINTS[0]) if c.viewpoint == vid)
        np.testing.assert_array_equal(obs.candidates[0, k, :8], feats[cand.view])
        h, e = cand.heading - agent_heading, cand.elevation
        expected = [math.sin(h), math.cos(h), math.sin(e), math.cos(e)]
        np.testing.assert_allclose(obs.candidates[0, k, 8:12], expected, atol=1e-6)
    assert not obs.candidates[0, n].any()  # STOP slot is zeros
    assert obs.candidate_mask.tolist() == [[True, True, True, True]]
    expected = [math.sin(agent_heading), math.cos(agent_heading), 0, 1]
    np.testing.assert_allclose(obs.heading_feature[0, :4], expected, atol=1e-6)


def _episodes(shared_data: Path, graph: nx.Graph) -> list[NavInstruction]:
    items = read_r2r(shared_data / "r2r" / "R2R_train.json", graphs=None)
    return [it for it in items if it.scan == SCAN][:6]


def test_teacher_reaches_the_goal_on_the_shortest_path(shared_data: Path, graph: nx.Graph,
                                                        features: dict) -> None:
    episodes = _episodes(shared_data, graph)
    env = NavEnv({SCAN: graph}, features, max_action=35)
    obs = env.reset(episodes)
    while not env.done:
        obs = env.step(obs.teacher)
    assert env.stopped.all() and (obs.teacher == IGNORE).all()
    for ep, traj in zip(episodes, env.trajectories):
        places = [step[0] for i, step in enumerate(traj) if i == 0 or step[0] != traj[i - 1][0]]
        expected = nx.dijkstra_path(graph, ep.path[0], ep.path[-1])
        assert places == expected
        assert places[-1] == ep.path[-1]
        # R2R paths are shortest paths: the teacher walks the annotated path
        assert places == list(ep.path)
    assert obs.distance == pytest.approx(0.0)


def test_move_turns_to_the_candidate_view_first(graph: nx.Graph, features: dict) -> None:
    env = NavEnv({SCAN: graph}, features, record_turns=True)
    ep = _ep(0.0)
    obs = env.reset([ep])
    k = obs.candidate_viewpoints[0].index(VIEWPOINTS[1])
    target_view = obs.candidate_views[0][k]  # 10: heading 300, elevation -30
    obs = env.step([k])
    assert obs.viewpoints == (VIEWPOINTS[1],) and obs.view_index[0] == target_view
    traj = env.trajectories[0]
    # start (view 12), down to view 0, ten right turns to view 10, then the move
    assert len(traj) == 1 + 1 + 10 + 1
    assert traj[1] == (VIEWPOINTS[0], 0.0, pytest.approx(-30 * DEG))
    assert traj[-1] == (VIEWPOINTS[1], pytest.approx(300 * DEG), pytest.approx(-30 * DEG))
    quiet = NavEnv({SCAN: graph}, features, record_turns=False)
    quiet.reset([ep])
    quiet.step([k])
    assert [s[0] for s in quiet.trajectories[0]] == [VIEWPOINTS[0], VIEWPOINTS[1]]


def test_stop_actions_limits_and_errors(graph: nx.Graph, features: dict) -> None:
    ep = _ep(0.0)
    env = NavEnv({SCAN: graph}, features, max_action=2)
    obs = env.reset([ep, ep, ep])
    obs = env.step([-1, obs.n_candidates[1], 0])
    assert obs.stopped.tolist() == [True, True, False] and obs.teacher[:2].tolist() == [IGNORE, IGNORE]
    with pytest.raises(ValueError, match="action 7"):
        env.step([0, 0, 7])
    env.step([0, 0, 0])
    assert env.done and env.steps == 2
    with pytest.raises(RuntimeError, match="done"):
        env.step([0, 0, 0])
    with pytest.raises(KeyError, match="no view features"):
        NavEnv({SCAN: graph}, {}).reset([ep])
    with pytest.raises(KeyError, match="no navigation graph"):
        NavEnv({}, features).reset([ep])


def test_determinism(shared_data: Path, graph: nx.Graph, features: dict) -> None:
    episodes = _episodes(shared_data, graph)

    def run() -> tuple[list, list]:
        env = NavEnv({SCAN: graph}, features, max_action=6)
        rng = np.random.default_rng(5)
        obs, seen = env.reset(episodes), []
        while not env.done:
            actions = [int(rng.integers(0, n + 1)) for n in obs.n_candidates]
            obs = env.step(actions)
            seen.append((obs.viewpoints, obs.candidates.copy(), obs.teacher.copy(), obs.distance.copy()))
        return seen, env.trajectories

    (a, ta), (b, tb) = run(), run()
    assert ta == tb
    for x, y in zip(a, b):
        assert x[0] == y[0]
        for u, v in zip(x[1:], y[1:]):
            np.testing.assert_array_equal(u, v)
