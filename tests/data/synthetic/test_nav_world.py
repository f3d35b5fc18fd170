"""The embedded navigation world: camera conventions of the rendered views, instructions that name the
path's objects and turns, and the files in the official R2R / RxR formats."""

from __future__ import annotations

import json
import math
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from clipvil.data.nav import load_nav_graphs, read_r2r, read_rxr
from clipvil.data.nav_env import NavEnv
from clipvil.data.synthetic.nav_render import Look, NavObject, project, render_view
from clipvil.data.synthetic.nav_world import NavWorldSpec, describe, make_nav_world, path_events
from clipvil.data.synthetic.scene import COLORS

W, H = 64, 48
LOOK = Look((120, 120, 120), (90, 90, 90), 0.0, 20.0)


def test_projection_follows_the_nav_env_headings() -> None:
    cam = (0.0, 0.0, 1.5)
    x, y, depth = project((0.0, 2.0, 1.5), cam, 0.0, 0.0, W, H)  # +y: heading 0
    assert (x, y, depth) == pytest.approx((W / 2, H / 2, 2.0))
    x, y, _ = project((2.0, 0.0, 1.5), cam, math.radians(90), 0.0, W, H)  # +x: heading 90 (to the right)
    assert (x, y) == pytest.approx((W / 2, H / 2))
    x, _, _ = project((1.0, 2.0, 1.5), cam, 0.0, 0.0, W, H)
    assert x > W / 2  # +x is on the right of a camera facing +y
    assert project((0.0, -2.0, 1.5), cam, 0.0, 0.0, W, H) is None  # behind
    _, low, _ = project((0.0, 1.0, 1.0), cam, 0.0, 0.0, W, H)  # 0.5 m below at 1 m: elevation -26.6 deg
    _, down, _ = project((0.0, 1.0, 1.0), cam, 0.0, math.radians(-30), W, H)
    assert low > H / 2 and down < H / 2  # below the level view's centre, just above the -30 deg view's


def test_an_object_is_drawn_in_its_view_and_shrinks_with_distance() -> None:
    near = NavObject(1, "square", "red", (0.0, 1.5, 1.5), 0.22, 0.0)
    far = NavObject(1, "square", "red", (0.0, 6.0, 1.5), 0.22, 0.0)
    cam, rng = (0.0, 0.0, 1.5), np.random.default_rng(0)
    img = np.asarray(render_view(cam, 12, [near], LOOK, W, H, rng)).astype(int)  # view 12: heading 0, level
    assert np.abs(img[H // 2, W // 2] - np.array(COLORS["red"])).max() <= 6
    red = np.abs(img - np.array(COLORS["red"])).max(axis=2) <= 12
    far_red = np.abs(np.asarray(render_view(cam, 12, [far], LOOK, W, H, rng)).astype(int)
                     - np.array(COLORS["red"])).max(axis=2) <= 12
    assert red.sum() > 8 * far_red.sum() > 0  # 4x the distance: 1/16 of the area
    behind = np.asarray(render_view(cam, 18, [near], LOOK, W, H, rng)).astype(int)  # heading 180
    assert not (np.abs(behind - np.array(COLORS["red"])).max(axis=2) <= 12).any()


def test_instructions_name_the_turns_and_the_objects_passed() -> None:
    graph = nx.Graph()
    for name, pos in {"A": (0, 0, 1.5), "B": (0, 2, 1.5), "C": (2, 2, 1.5)}.items():
        graph.add_node(name, position=np.array(pos, dtype=float))
    graph.add_edge("A", "B", weight=2.0)
    graph.add_edge("B", "C", weight=2.0)
    events = path_events(graph, ["A", "B", "C"], heading=math.pi)  # facing -y, the path goes +y then +x
    assert events == [("turn", "around"), ("past", "B"), ("turn", "right"), ("stop", "C")]
    objects = {v: NavObject(k, s, c, (0, 0, 0), 0.2, 0) for k, (v, s, c) in
               enumerate([("A", "circle", "green"), ("B", "star", "red"), ("C", "cross", "blue")])}
    text = describe(events, objects, "en", np.random.default_rng(0))
    assert text.startswith("Turn around, ") and "the red star" in text and text.endswith("the blue cross.")
    assert "turn right" in text or "go right" in text
    hindi = describe(events, objects, "hi", np.random.default_rng(0))
    assert hindi == "पीछे मुड़िए, लाल तारा के पास से गुजरिए, दाएं मुड़िए, नीला क्रॉस के पास रुकिए।"
    straight = path_events(graph, ["A", "B"], heading=0.0)
    assert straight == [("forward", None), ("stop", "B")]


def test_world_files_in_official_formats(shared_data: Path, tmp_path: Path) -> None:
    spec = NavWorldSpec(train_scans=("gZ6f7yhEvPG",), unseen_scans=("YmJkqBEsHnH",), train_paths=6,
                        val_seen_paths=2, val_unseen_paths=3, aug_paths=4, width=48, height=36)
    manifest = make_nav_world(tmp_path / "w", shared_data / "clip-vil/connectivity", spec)
    root = tmp_path / "w"
    graphs = load_nav_graphs(root / "connectivity")
    assert set(graphs) == {"gZ6f7yhEvPG", "YmJkqBEsHnH"}
    assert manifest["images"] == 36 * sum(g.number_of_nodes() for g in graphs.values())
    train, seen, unseen = (read_r2r(root / f"R2R_{s}.json", graphs) for s in ("train", "val_seen", "val_unseen"))
    assert len(train) == 18 and len(seen) == 6 and len(unseen) == 9  # three instructions per path
    assert {e.scan for e in train} == {e.scan for e in seen} == {"gZ6f7yhEvPG"}
    assert {e.scan for e in unseen} == {"YmJkqBEsHnH"}
    env = NavEnv(graphs, {}, max_action=10)
    for ep in train:
        assert 4 <= len(ep.path) <= 6 and ep.path == tuple(env.shortest_path(ep.scan, ep.path[0], ep.path[-1]))
    objects = json.loads((root / "objects.json").read_text())
    goal = objects[train[0].scan][train[0].path[-1]]
    assert train[0].instruction.endswith(f"the {goal['color']} {goal['shape']}.")
    rxr = read_rxr(root / "rxr/rxr_val_unseen_guide.jsonl", graphs)
    assert {e.language for e in rxr} == {"en-IN", "hi-IN", "te-IN"} and len(rxr) == 9
    assert len(read_rxr(root / "rxr/rxr_val_unseen_guide.jsonl", languages=["te"])) == 3
    assert len(read_r2r(root / "aug_paths.json", graphs)) == 12
    assert (root / "views/gZ6f7yhEvPG" / train[0].path[0] / "35.jpg").is_file()
    assert make_nav_world(root, shared_data / "clip-vil/connectivity", spec) == manifest  # reused as it is
    with pytest.raises(ValueError, match="another spec"):
        make_nav_world(root, shared_data / "clip-vil/connectivity", NavWorldSpec(seed=1))


def test_a_world_killed_while_it_was_written_is_written_again(shared_data: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from clipvil.data.synthetic import nav_world

    spec = NavWorldSpec(train_scans=("gZ6f7yhEvPG",), unseen_scans=("YmJkqBEsHnH",), train_paths=4,
                        val_seen_paths=2, val_unseen_paths=2, aug_paths=0, width=48, height=36)
    connectivity = shared_data / "clip-vil/connectivity"
    clean = make_nav_world(tmp_path / "clean", connectivity, spec)
    real_render = nav_world.render_scan

    def killed(*args: object, **kwargs: object) -> int:
        real_render(*args, **kwargs)  # the first scan's views are written, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(nav_world, "render_scan", killed)
    with pytest.raises(KeyboardInterrupt):
        make_nav_world(tmp_path / "w", connectivity, spec)
    assert not (tmp_path / "w/manifest.json").exists() and (tmp_path / "w/views").is_dir()
    monkeypatch.setattr(nav_world, "render_scan", real_render)
    with pytest.raises(ValueError, match="unfinished navigation world of another spec"):
        make_nav_world(tmp_path / "w", connectivity, NavWorldSpec(seed=3))
    assert make_nav_world(tmp_path / "w", connectivity, spec) == clean
    assert not (tmp_path / "w" / nav_world.BUILDING).exists()
    view = Path("views/YmJkqBEsHnH") / min(p.name for p in (tmp_path / "clean/views/YmJkqBEsHnH").iterdir())
    assert (tmp_path / "w" / view / "7.jpg").read_bytes() == (tmp_path / "clean" / view / "7.jpg").read_bytes()
