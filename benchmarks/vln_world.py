"""Navigation on the embedded world: the follower runs' SR / SPL on val_seen and val_unseen beside the
"walk forward" baseline (clipvil.families.vln.eval.forward_baseline with K = the median number of moves of the
training paths), as JSON.

    .venv/bin/python benchmarks/vln_world.py --world runs/navworld --runs runs/vln/navworld_follower \\
        runs/vln/navworld_more runs/vln/navworld_bt --out benchmarks/results/vln_world.json

Each run is reported at its best checkpoint (best val_unseen SR, the recipes' rule) and at its last evaluation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import write_json
from clipvil.data.nav import load_nav_graphs, read_r2r, shortest_distances
from clipvil.data.nav_env import NavEnv
from clipvil.families.vln.eval import forward_baseline, navigation_metrics

KEYS = ("sr", "spl", "ne", "tl", "osr")


def baseline(world: Path, max_action: int) -> dict[str, Any]:
    graphs = load_nav_graphs(world / "connectivity")
    distances = {s: shortest_distances(g) for s, g in graphs.items()}
    moves = int(statistics.median(len(e.path) - 1 for e in read_r2r(world / "R2R_train.json")))
    env = NavEnv(graphs, _Blank(), max_action=max_action)  # the walk never looks at the views
    out: dict[str, Any] = {"moves": moves}
    for split in ("val_seen", "val_unseen"):
        episodes = read_r2r(world / f"R2R_{split}.json")
        scores = navigation_metrics(forward_baseline(env, episodes, moves), episodes, distances, True)
        out[split] = {k: round(scores[k], 4) for k in KEYS}
    return out


class _Blank(Mapping):
    """A zero view feature [36, 1] for every viewpoint."""

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.zeros((36, 1), dtype=np.float32)

    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def __len__(self) -> int:
        return 0


def run_result(run: Path) -> dict[str, Any]:
    evals = [json.loads(x) for x in (run / "logs/eval.jsonl").read_text().splitlines()]
    train = [json.loads(x) for x in (run / "logs/train.jsonl").read_text().splitlines()]
    best_step = max((e for e in evals if e["split"] == "val_unseen"), key=lambda e: (e["sr"], -e["step"]))["step"]
    last = max(e["step"] for e in evals)

    def at(step: int) -> dict[str, Any]:
        return {e["split"]: {k: round(e[k], 4) for k in KEYS} for e in evals if e["step"] == step}

    return {"updates": train[-1]["step"], "best_step": best_step, "best": at(best_step), "last_step": last,
            "last": at(last)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", default="runs/navworld")
    ap.add_argument("--runs", nargs="*", default=[])
    ap.add_argument("--max-action", type=int, default=15)
    ap.add_argument("--out", default="benchmarks/results/vln_world.json")
    args = ap.parse_args()
    write_json(args.out, {"benchmark": "vln_world", "forward_baseline": baseline(Path(args.world), args.max_action),
                          "runs": {Path(r).name: run_result(Path(r)) for r in args.runs}})


if __name__ == "__main__":
    main()
