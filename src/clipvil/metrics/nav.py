"""Vision-and-language navigation metrics: R2R's TL, NE, SR, OSR, SPL and RxR's nDTW, sDTW, CLS.

Computed as R2R-EnvDrop's eval.py (the evaluation CLIP-ViL's R2R numbers come from) and the RxR / r4r
DTW definitions (Ilharco et al. 2019, "General Evaluation for Instruction Conditioned Navigation using
Dynamic Time Warping"), over plain inputs: a trajectory is a list of viewpoint ids (entries may also be
EnvDrop's (viewpoint, heading, elevation) steps), and distances come from a lookup d[a][b] of shortest-path
metres within the scan (e.g. clipvil.data.nav.shortest_distances(graph)); nothing here reads files.

Per episode, with start s, goal g (last reference viewpoint), final viewpoint f and radius 3 m:
- TL: sum of d between consecutive trajectory viewpoints; NE: d[f][g]; SR: NE < 3 (strict, as EnvDrop and
  the RxR README); OSR: min over the trajectory of d[v][g] < 3; SPL: SR * d[s][g] / max(d[s][g], TL, 0.01).
- DTW: the dynamic-time-warping cost between trajectory and reference with cost d; nDTW: exp(-DTW / (3 m *
  len(reference))); sDTW: SR * nDTW. With `merge_repeats` (default) consecutive repeats of a viewpoint
  (turning in place) are merged before DTW, so the path is a sequence of places as in the definition;
  CLIP-ViL's RxR evaluation kept them (merge_repeats=False reproduces it). The r4r reference code uses
  NE <= 3 for sDTW; the two differ only at exactly 3 m.
- CLS (coverage weighted by length score, Jain et al. 2019, as CLIP-ViL's rxr_src/eval.py computes it):
  coverage PC = mean over reference viewpoints r of exp(-min_p d[r][p] / 3 m); expected length
  EPL = PC * PL(reference); LS = EPL / (EPL + |EPL - PL(trajectory)|); CLS = PC * LS. PL sums d over
  consecutive viewpoints (repeats add 0). A one-viewpoint reference has EPL = 0: LS is 1 when the
  trajectory does not move either, else 0.
Summaries average over episodes; rates are fractions in [0, 1] as the official evaluations report them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

DistanceTable = Mapping[str, Mapping[str, float]]
SUCCESS_RADIUS = 3.0


class NavReference(Protocol):
    """What a reference needs (clipvil.data.nav.NavInstruction has it)."""

    @property
    def scan(self) -> str: ...

    @property
    def path(self) -> Sequence[str]: ...


@dataclass(frozen=True)
class EpisodeScores:
    """The metrics of one trajectory against its reference path (lengths in metres)."""

    trajectory_length: float
    nav_error: float
    oracle_error: float
    success: float  # 1.0 or 0.0
    oracle_success: float  # 1.0 or 0.0
    spl: float
    dtw: float
    ndtw: float
    sdtw: float
    steps: int  # trajectory entries - 1 (EnvDrop's "steps": turns in place count)
    shortest_length: float  # d[start][goal]
    cls: float = 0.0  # coverage weighted by length score


@dataclass(frozen=True)
class NavScores:
    """Averages over episodes (`summary`) and the per-episode scores by instruction id."""

    summary: dict[str, float]
    per_episode: dict[str, EpisodeScores]

    def to_dict(self, include_per_episode: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.summary)
        if include_per_episode:
            out["per_episode"] = {k: asdict(v) for k, v in self.per_episode.items()}
        return out


def viewpoints_of(trajectory: Sequence[Any]) -> list[str]:
    """Viewpoint ids of a trajectory whose entries are ids or (viewpoint, heading, elevation) steps."""
    return [step if isinstance(step, str) else step[0] for step in trajectory]


def collapse_repeats(viewpoints: Sequence[str]) -> list[str]:
    """The path without consecutive repeats: [a, a, b, b, a] -> [a, b, a]."""
    return [v for i, v in enumerate(viewpoints) if i == 0 or v != viewpoints[i - 1]]


def dtw_cost(prediction: Sequence[str], reference: Sequence[str], distances: DistanceTable) -> float:
    """Dynamic time warping cost between two viewpoint sequences, with the shortest-path distance as cost."""
    inf = math.inf
    previous = [0.0] + [inf] * len(reference)  # row i-1 of the (len(pred)+1) x (len(ref)+1) DP table
    for p in prediction:
        row = [inf] * (len(reference) + 1)
        to_p = distances[p]
        for j, r in enumerate(reference, start=1):
            row[j] = to_p[r] + min(previous[j], row[j - 1], previous[j - 1])
        previous = row
    return previous[-1]


def path_length(path: Sequence[str], distances: DistanceTable) -> float:
    """Sum of d over consecutive viewpoints (repeats add 0)."""
    return float(sum(distances[a][b] for a, b in itertools.pairwise(path)))


def cls_score(prediction: Sequence[str], reference: Sequence[str], distances: DistanceTable,
              radius: float = SUCCESS_RADIUS) -> float:
    """Coverage weighted by length score of a viewpoint path against the reference (module docstring)."""
    if not prediction or not reference:
        raise ValueError("cls_score: empty trajectory or reference")
    coverage = sum(math.exp(-min(distances[r][p] for p in prediction) / radius) for r in reference) / len(reference)
    expected = coverage * path_length(reference, distances)
    length = path_length(prediction, distances)
    denominator = expected + abs(expected - length)
    length_score = expected / denominator if denominator > 0 else 1.0
    return coverage * length_score


def score_episode(
    trajectory: Sequence[Any],
    reference: Sequence[str],
    distances: DistanceTable,
    success_radius: float = SUCCESS_RADIUS,
    merge_repeats: bool = True,
) -> EpisodeScores:
    """The metrics of one trajectory (starting at reference[0]) against the reference path."""
    path = viewpoints_of(trajectory)
    if not path or not reference:
        raise ValueError("score_episode: empty trajectory or reference")
    start, goal = reference[0], reference[-1]
    if path[0] != start:
        raise ValueError(f"trajectory starts at {path[0]}, not at the reference start {start}")
    for viewpoint in {*path, *reference}:
        if viewpoint not in distances:
            raise ValueError(f"viewpoint {viewpoint} is not in the distance table of the scan")
    length = path_length(path, distances)
    nav_error = distances[path[-1]][goal]
    oracle_error = min(distances[v][goal] for v in path)
    shortest = distances[start][goal]
    success = float(nav_error < success_radius)
    cost = dtw_cost(collapse_repeats(path) if merge_repeats else path, reference, distances)
    ndtw = math.exp(-cost / (success_radius * len(reference)))
    return EpisodeScores(
        trajectory_length=length, nav_error=nav_error, oracle_error=oracle_error, success=success,
        oracle_success=float(oracle_error < success_radius), spl=success * shortest / max(shortest, length, 0.01),
        dtw=cost, ndtw=ndtw, sdtw=success * ndtw, steps=len(path) - 1, shortest_length=shortest,
        cls=cls_score(path, reference, distances, success_radius),
    )


_SUMMARY = {
    "tl": "trajectory_length", "ne": "nav_error", "oracle_error": "oracle_error", "sr": "success",
    "osr": "oracle_success", "spl": "spl", "ndtw": "ndtw", "sdtw": "sdtw", "cls": "cls", "steps": "steps",
}


def navigation_scores(
    trajectories: Mapping[str, Sequence[Any]],
    references: Mapping[str, NavReference],
    distances: Mapping[str, DistanceTable],
    success_radius: float = SUCCESS_RADIUS,
    merge_repeats: bool = True,
) -> NavScores:
    """Scores of {instr_id: trajectory} against {instr_id: reference with .scan and .path}.

    `distances[scan]` is that scan's lookup. Every reference needs a trajectory and every trajectory a
    reference (EnvDrop asserts the first for evaluation splits); errors name the instruction.
    """
    missing = sorted(references.keys() - trajectories.keys())
    extra = sorted(trajectories.keys() - references.keys())
    if missing or extra:
        raise ValueError(f"navigation_scores: {len(missing)} instruction(s) without trajectory (e.g. {missing[:5]}),"
                         f" {len(extra)} trajectory(ies) for unknown instructions (e.g. {extra[:5]})")
    if not references:
        raise ValueError("navigation_scores: no instructions to score")
    per_episode = {}
    for instr_id, ref in references.items():
        if ref.scan not in distances:
            raise ValueError(f"navigation_scores: instruction {instr_id}: no distances for scan {ref.scan}")
        try:
            per_episode[instr_id] = score_episode(
                trajectories[instr_id], ref.path, distances[ref.scan], success_radius, merge_repeats
            )
        except (ValueError, KeyError, TypeError, IndexError) as err:
            raise ValueError(f"navigation_scores: instruction {instr_id} (scan {ref.scan}): {err}") from err
    n = len(per_episode)
    summary = {key: sum(float(getattr(e, field)) for e in per_episode.values()) / n for key, field in _SUMMARY.items()}
    summary["n"] = float(n)
    return NavScores(summary, per_episode)
