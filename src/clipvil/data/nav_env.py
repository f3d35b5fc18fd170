"""A batched navigation environment over the Matterport3D connectivity graphs, with no simulator.

It reproduces what R2R-EnvDrop's `R2RBatch` observes through MatterSim in discretised mode (the setting
CLIP-ViL's VLN code uses), from the graph's poses and a feature lookup:

- Views: 36 per viewpoint, view index = 12 * elevation_level + heading_index; heading_index k faces
  k * 30 deg; elevation levels 0, 1, 2 look at -30, 0, +30 deg. Headings follow MatterSim: 0 faces +y,
  positive turns right (towards +x), so the heading of a direction (dx, dy) is atan2(dx, dy); the
  elevation of a target is atan2(dz, |(dx, dy)|). Positions are the poses' translations (as float32, as
  MatterSim keeps them).
- Agent: stands at a viewpoint facing one view. A new episode snaps the given heading to the nearest
  30 deg step at elevation 0 (MatterSim's `setHeadingElevation`); moving to a candidate first turns to
  the candidate's view (EnvDrop's `make_equiv_action`: up/down to its level, then right), so the agent's
  heading and elevation are always those of a view.
- Candidates (EnvDrop's `make_candidate`): for each view in index order, the graph neighbours that
  MatterSim reports as navigable from it (horizontal angle within half its 80 deg horizontal field of
  view, vfov 60 * 640/480; elevation is not tested), sorted by angular distance sqrt(rel_heading^2 +
  rel_elevation^2) to the view centre; each neighbour keeps the view with the smallest distance (the
  first such view on a tie). The candidate list is in order of first appearance. A neighbour straight
  above or below (no horizontal offset) is never navigable, as in MatterSim.
- Features: candidate = [feature of its view ; angle_feature(heading - agent heading, elevation)];
  panorama = the 36 [view feature ; angle_feature(view heading - agent heading, view elevation)]
  (EnvDrop's `get_all_point_angle_feature`). Elevations are absolute, headings relative to the agent's.
  The angle feature is [sin h, cos h, sin e, cos e] repeated size/4 times (EnvDrop's `angle_feature`).
- Actions: a candidate index, or STOP: -1 or the STOP slot's index n_candidates[i] (EnvDrop puts STOP
  after the real candidates, with an all-zero feature). Stopped episodes ignore further actions. After
  `max_action` steps the episode batch is done (EnvDrop's maxAction: 35 in CLIP-ViL's R2R and RxR runs).
- Teacher (EnvDrop's `_teacher_action`): the candidate that is the next viewpoint of the shortest path
  (networkx Dijkstra from the current viewpoint, as EnvDrop's all-pairs table) to the goal, STOP at the goal,
  IGNORE (-100) for stopped episodes.

Trajectories are lists of (viewpoint, heading, elevation) steps; with `record_turns` (EnvDrop's R2R
behaviour) every turn in place is a step too, without it (CLIP-ViL's RxR code) only moves are.
Nothing here is random: the same episodes and actions give the same observations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import networkx as nx
import numpy as np

N_HEADINGS = 12
N_ELEVATIONS = 3
N_VIEWS = N_HEADINGS * N_ELEVATIONS
VIEW_STEP = math.radians(30.0)  # heading and elevation increments of the discretised views
HALF_HFOV = math.radians(60.0) * 640 / 480 / 2  # MatterSim: vfov 60 deg, 640x480 camera
ANGLE_FEAT_SIZE = 128
IGNORE = -100  # teacher action of an episode that has already stopped (CrossEntropyLoss's ignore_index)
STOP = -1

FeatureLookup = Mapping[tuple[str, str], np.ndarray]  # (scan, viewpoint) -> [36, D] view features
Step = tuple[str, float, float]  # (viewpoint, heading, elevation)


class NavEpisodeLike(Protocol):
    """What an episode needs (clipvil.data.nav.NavInstruction has it): the goal is path[-1]."""

    @property
    def scan(self) -> str: ...

    @property
    def path(self) -> Sequence[str]: ...

    @property
    def heading(self) -> float: ...


# ------------------------------------------------------------------------------------------------ angles


def view_heading(view: int | np.ndarray) -> np.ndarray:
    """Heading (radians) of view indices: (view mod 12) * 30 deg (a numpy scalar for an int)."""
    return (np.asarray(view) % N_HEADINGS) * VIEW_STEP


def view_elevation(view: int | np.ndarray) -> np.ndarray:
    """Elevation (radians) of view indices: -30, 0, +30 deg for 0-11, 12-23, 24-35 (a scalar for an int)."""
    return (np.asarray(view) // N_HEADINGS - 1) * VIEW_STEP


def snap_view(heading: float, elevation: float = 0.0) -> int:
    """The view MatterSim's discretised `setHeadingElevation` puts the camera in (nearest 30 deg heading,
    elevation level by thresholds at +-15 deg)."""
    turned = math.fmod(heading, 2 * math.pi) % (2 * math.pi)  # [0, 2 pi)
    step = math.floor(turned / VIEW_STEP + 0.5) % N_HEADINGS  # std::lround: halves round up
    if elevation < -VIEW_STEP / 2:
        return step
    if elevation > VIEW_STEP / 2:
        return step + 2 * N_HEADINGS
    return step + N_HEADINGS


def angle_feature(heading: float | np.ndarray, elevation: float | np.ndarray,
                  size: int = ANGLE_FEAT_SIZE) -> np.ndarray:
    """[sin h, cos h, sin e, cos e] repeated size/4 times, float32, shape [..., size] (EnvDrop's order)."""
    if size % 4:
        raise ValueError(f"angle feature size {size} is not a multiple of 4")
    h = np.asarray(heading, dtype=np.float64)
    e = np.asarray(elevation, dtype=np.float64)
    quad = np.stack(np.broadcast_arrays(np.sin(h), np.cos(h), np.sin(e), np.cos(e)), axis=-1)  # [..., 4]
    return np.tile(quad, (1,) * (quad.ndim - 1) + (size // 4,)).astype(np.float32)  # [..., size]


def panorama_angle_features(base_view: int, size: int = ANGLE_FEAT_SIZE) -> np.ndarray:
    """[36, size]: the angle feature of each view seen from an agent facing `base_view`."""
    views = np.arange(N_VIEWS)
    return angle_feature(view_heading(views) - view_heading(base_view), view_elevation(views), size)


# -------------------------------------------------------------------------------------------- candidates


@dataclass(frozen=True)
class Candidate:
    """A navigable neighbour as EnvDrop's candidate list holds it."""

    viewpoint: str  # the neighbour's viewpoint id
    view: int  # index of the view that represents it (EnvDrop's pointId)
    heading: float  # absolute heading to it: view heading + relative heading (EnvDrop's normalized_heading)
    elevation: float  # absolute elevation to it (camera to camera)
    angular_distance: float  # sqrt(rel_heading^2 + rel_elevation^2) to the centre of `view`


def _position(graph: nx.Graph, viewpoint: str) -> np.ndarray:
    return np.asarray(graph.nodes[viewpoint]["position"], dtype=np.float32)  # [3]


def direction(graph: nx.Graph, source: str, target: str) -> tuple[float, float]:
    """(heading, elevation) of `target` seen from `source`, in MatterSim's convention."""
    d = (_position(graph, target) - _position(graph, source)).astype(np.float64)  # [3]
    return math.atan2(d[0], d[1]), math.atan2(d[2], math.hypot(d[0], d[1]))


def make_candidates(graph: nx.Graph, viewpoint: str) -> tuple[Candidate, ...]:
    """The candidates at `viewpoint` (the rule in the module docstring); KeyError for an unknown viewpoint."""
    if viewpoint not in graph:
        raise KeyError(f"viewpoint {viewpoint} is not in the navigation graph")
    here = _position(graph, viewpoint)
    best: dict[str, Candidate] = {}
    for view in range(N_VIEWS):
        vh, ve = view_heading(view), view_elevation(view)
        cam = (math.sin(vh), math.cos(vh))  # horizontal viewing direction
        visible = []
        for other in graph.neighbors(viewpoint):
            d = (_position(graph, other) - here).astype(np.float64)  # [3]
            flat = math.hypot(d[0], d[1])
            if flat == 0.0 or (d[0] * cam[0] + d[1] * cam[1]) / flat < math.cos(HALF_HFOV):
                continue
            rel_h = math.atan2(d[0] * cam[1] - d[1] * cam[0], d[0] * cam[0] + d[1] * cam[1])
            rel_e = math.atan2(d[2], flat) - ve
            visible.append((math.sqrt(rel_h**2 + rel_e**2), other, rel_h, rel_e))
        visible.sort(key=lambda item: item[0])
        for dist, other, rel_h, rel_e in visible:
            if other not in best or dist < best[other].angular_distance:
                best[other] = Candidate(other, view, float(vh + rel_h), float(ve + rel_e), dist)
    return tuple(best.values())


# ------------------------------------------------------------------------------------------ observations


@dataclass(frozen=True)
class NavObservation:
    """What a batch of agents sees at one step (numpy; B episodes, K = max candidates in the batch)."""

    scans: tuple[str, ...]  # [B]
    viewpoints: tuple[str, ...]  # [B] current viewpoint
    view_index: np.ndarray  # [B] int64, the view the agent faces
    heading: np.ndarray  # [B] float64 radians, the agent's heading (a multiple of 30 deg)
    elevation: np.ndarray  # [B] float64 radians (-30, 0 or +30 deg)
    heading_feature: np.ndarray  # [B, A] float32 angle_feature(heading, elevation): the action input
    panorama: np.ndarray  # [B, 36, D + A] float32
    candidates: np.ndarray  # [B, K + 1, D + A] float32; row n_candidates[i] is STOP (zeros), then padding
    candidate_mask: np.ndarray  # [B, K + 1] bool, True for real candidates and the STOP slot
    n_candidates: np.ndarray  # [B] int64
    candidate_viewpoints: tuple[tuple[str, ...], ...]  # [B][n_candidates[i]]
    candidate_views: tuple[tuple[int, ...], ...]  # [B][n_candidates[i]] the view of each candidate
    teacher: np.ndarray  # [B] int64 next shortest-path candidate, n_candidates[i] = STOP, IGNORE if stopped
    distance: np.ndarray  # [B] float64 shortest-path metres to the goal
    stopped: np.ndarray  # [B] bool, episodes that have taken STOP


class NavEnv:
    """Batched, deterministic R2R/RxR environment (see the module docstring).

    `graphs` maps scan -> graph (clipvil.data.nav.load_nav_graphs); `features` maps (scan, viewpoint) ->
    float array [36, D] (any Mapping: a dict, or a lazy view of the feature store).
    """

    def __init__(self, graphs: Mapping[str, nx.Graph], features: FeatureLookup, *, max_action: int = 35,
                 angle_dim: int = ANGLE_FEAT_SIZE, record_turns: bool = True) -> None:
        if max_action < 1:
            raise ValueError(f"max_action must be >= 1, got {max_action}")
        self.graphs = graphs
        self.features = features
        self.max_action = max_action
        self.angle_dim = angle_dim
        self.record_turns = record_turns
        self.feature_dim: int | None = None  # D, known after the first lookup
        angles = [panorama_angle_features(v, angle_dim) for v in range(N_VIEWS)]
        self._pano_angles = np.stack(angles)  # [36 agent views, 36 views, A]
        self._candidates: dict[tuple[str, str], tuple[Candidate, ...]] = {}
        self._routes: dict[tuple[str, str], tuple[dict[str, float], dict[str, list[str]]]] = {}
        self._episodes: list[NavEpisodeLike] = []

    # -- graph queries (cached) --

    def candidates(self, scan: str, viewpoint: str) -> tuple[Candidate, ...]:
        """The candidates at a viewpoint of a scan (computed once)."""
        key = (scan, viewpoint)
        if key not in self._candidates:
            self._candidates[key] = make_candidates(self._graph(scan), viewpoint)
        return self._candidates[key]

    def _graph(self, scan: str) -> nx.Graph:
        if scan not in self.graphs:
            raise KeyError(f"scan {scan!r}: no navigation graph loaded")
        return self.graphs[scan]

    def _route(self, scan: str, source: str) -> tuple[dict[str, float], dict[str, list[str]]]:
        key = (scan, source)
        if key not in self._routes:
            self._routes[key] = nx.single_source_dijkstra(self._graph(scan), source, weight="weight")
        return self._routes[key]

    def distance(self, scan: str, source: str, target: str) -> float:
        """Shortest-path metres from source to target."""
        return float(self._route(scan, source)[0][target])

    def shortest_path(self, scan: str, source: str, target: str) -> list[str]:
        """Viewpoints of the shortest path from source to target, both included."""
        return list(self._route(scan, source)[1][target])

    def view_features(self, scan: str, viewpoint: str) -> np.ndarray:
        """[36, D] float32 features of a viewpoint; KeyError/ValueError naming it if missing or malformed."""
        try:
            feats = np.asarray(self.features[(scan, viewpoint)], dtype=np.float32)
        except KeyError:
            raise KeyError(f"no view features for scan {scan}, viewpoint {viewpoint}") from None
        if feats.ndim != 2 or feats.shape[0] != N_VIEWS or (self.feature_dim not in (None, feats.shape[1])):
            raise ValueError(f"view features of {scan}/{viewpoint}: shape {feats.shape}, expected "
                             f"[{N_VIEWS}, {self.feature_dim or 'D'}]")
        self.feature_dim = feats.shape[1]
        return feats

    # -- episodes --

    def reset(self, episodes: Sequence[NavEpisodeLike]) -> NavObservation:
        """Starts one episode per item at path[0], facing the snapped heading at elevation 0."""
        if not episodes:
            raise ValueError("reset: no episodes")
        for ep in episodes:
            for vp in (ep.path[0], ep.path[-1]):
                if vp not in self._graph(ep.scan):
                    raise KeyError(f"scan {ep.scan}: viewpoint {vp} is not in the navigation graph")
        self._episodes = list(episodes)
        self._at = [ep.path[0] for ep in episodes]
        self._view = np.array([snap_view(ep.heading) for ep in episodes], dtype=np.int64)  # [B]
        self.stopped = np.zeros(len(episodes), dtype=bool)  # [B]
        self.steps = 0
        self.trajectories: list[list[Step]] = [[self._step_record(i)] for i in range(len(episodes))]
        return self.observe()

    @property
    def batch_size(self) -> int:
        return len(self._episodes)

    @property
    def done(self) -> bool:
        """Every episode has stopped, or max_action steps were taken."""
        return bool(self.stopped.all()) or self.steps >= self.max_action

    def _step_record(self, i: int) -> Step:
        view = int(self._view[i])
        return (self._at[i], float(view_heading(view)), float(view_elevation(view)))

    def step(self, actions: Sequence[int] | np.ndarray) -> NavObservation:
        """Applies one action per episode (a candidate index, STOP = -1, or n_candidates[i] = STOP)."""
        actions = np.asarray(actions, dtype=np.int64).reshape(-1)  # [B]
        if actions.shape[0] != self.batch_size:
            raise ValueError(f"step: {actions.shape[0]} actions for {self.batch_size} episodes")
        if self.done:
            raise RuntimeError("step: the episodes are done (all stopped or max_action reached); call reset")
        for i, action in enumerate(actions.tolist()):
            if self.stopped[i]:
                continue
            cands = self.candidates(self._episodes[i].scan, self._at[i])
            if action == STOP or action == len(cands):
                self.stopped[i] = True
            elif 0 <= action < len(cands):
                self._move(i, cands[action])
            else:
                raise ValueError(f"step: episode {i}: action {action} is not a candidate "
                                 f"(0..{len(cands) - 1}), STOP (-1) or {len(cands)}")
        self.steps += 1
        return self.observe()

    def _move(self, i: int, cand: Candidate) -> None:
        """Turns to the candidate's view as EnvDrop's make_equiv_action does, then moves."""
        level, target_level = int(self._view[i]) // N_HEADINGS, cand.view // N_HEADINGS
        while level != target_level:  # up or down one level at a time
            level += 1 if level < target_level else -1
            self._view[i] = level * N_HEADINGS + int(self._view[i]) % N_HEADINGS
            if self.record_turns:
                self.trajectories[i].append(self._step_record(i))
        while int(self._view[i]) != cand.view:  # turn right
            self._view[i] = level * N_HEADINGS + (int(self._view[i]) + 1) % N_HEADINGS
            if self.record_turns:
                self.trajectories[i].append(self._step_record(i))
        self._at[i] = cand.viewpoint
        self.trajectories[i].append(self._step_record(i))

    def observe(self) -> NavObservation:
        """The observation of the current state (also returned by reset and step)."""
        rows = [self._observe_one(i) for i in range(self.batch_size)]
        k = max(len(r[1]) for r in rows) + 1
        width = rows[0][0].shape[1]
        cand_feats = np.zeros((self.batch_size, k, width), dtype=np.float32)  # [B, K+1, D+A]
        n = np.array([len(r[1]) for r in rows], dtype=np.int64)  # [B]
        for i, (_, feats, _, _) in enumerate(rows):
            cand_feats[i, : len(feats)] = feats
        mask = np.arange(k)[None, :] <= n[:, None]  # [B, K+1]
        views = self._view.copy()
        heading, elevation = view_heading(views), view_elevation(views)
        return NavObservation(
            scans=tuple(ep.scan for ep in self._episodes), viewpoints=tuple(self._at), view_index=views,
            heading=heading, elevation=elevation,
            heading_feature=angle_feature(heading, elevation, self.angle_dim),
            panorama=np.stack([r[0] for r in rows]), candidates=cand_feats, candidate_mask=mask,
            n_candidates=n, candidate_viewpoints=tuple(r[2] for r in rows),
            candidate_views=tuple(r[3] for r in rows), teacher=self._teacher(),
            distance=np.array([self._goal_distance(i) for i in range(self.batch_size)]),
            stopped=self.stopped.copy(),
        )

    def _observe_one(self, i: int) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], tuple[int, ...]]:
        scan, vp, view = self._episodes[i].scan, self._at[i], int(self._view[i])
        feats = self.view_features(scan, vp)  # [36, D]
        pano = np.concatenate([feats, self._pano_angles[view]], axis=1)  # [36, D+A]
        cands = self.candidates(scan, vp)
        views = np.array([c.view for c in cands], dtype=np.int64)  # [n]
        angles = angle_feature(np.array([c.heading for c in cands]) - view_heading(view),
                               np.array([c.elevation for c in cands]), self.angle_dim).reshape(len(cands), -1)
        cand = np.concatenate([feats[views], angles], axis=1)  # [n, D+A]
        return pano, cand, tuple(c.viewpoint for c in cands), tuple(views.tolist())

    def _goal_distance(self, i: int) -> float:
        ep = self._episodes[i]
        return self.distance(ep.scan, self._at[i], ep.path[-1])

    def _teacher(self) -> np.ndarray:
        out = np.full(self.batch_size, IGNORE, dtype=np.int64)  # [B]
        for i, ep in enumerate(self._episodes):
            if self.stopped[i]:
                continue
            cands = self.candidates(ep.scan, self._at[i])
            goal = ep.path[-1]
            if self._at[i] == goal:
                out[i] = len(cands)
                continue
            nxt = self.shortest_path(ep.scan, self._at[i], goal)[1]
            ks = [k for k, c in enumerate(cands) if c.viewpoint == nxt]
            if not ks:
                raise ValueError(f"scan {ep.scan}: the shortest path from {self._at[i]} goes to {nxt}, "
                                 "which is not navigable (no horizontal offset)")
            out[i] = ks[0]
        return out
