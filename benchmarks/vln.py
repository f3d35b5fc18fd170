"""VLN speed: EnvDrop training (IL + A2C rollouts + backward) and greedy evaluation, episodes/s at batch 64,
with the time inside the navigation environment (NavEnv reset/step: candidates, features, teacher) apart
from the model's (forward, backward, optimizer).

The embedded navigation world's R2R train instructions (real connectivity graphs, no rendering) with
random view features of CLIP ViT-B/32's width (D = 512), the paper-sized follower (preset envdrop):

    .venv/bin/python benchmarks/vln.py --out benchmarks/results/vln.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import write_json
from clipvil.data.nav import load_nav_graphs, read_r2r
from clipvil.data.nav_env import NavEnv
from clipvil.data.nav_text import EnvDropTokenizer, build_envdrop_vocab
from clipvil.data.synthetic.nav_world import make_nav_world
from clipvil.engine.models import build_model
from clipvil.families.vln.data import pad_tokens
from clipvil.families.vln.rollout import envdrop_loss, rollout

CONNECTIVITY = Path(__file__).resolve().parents[2] / "shared/data/clip-vil/connectivity"


class TimedEnv(NavEnv):
    """NavEnv that adds the wall time of reset/step (observations included) to `seconds`."""

    seconds = 0.0

    def reset(self, episodes):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return super().reset(episodes)
        finally:
            self.seconds += time.perf_counter() - start

    def step(self, actions):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return super().step(actions)
        finally:
            self.seconds += time.perf_counter() - start


def _setup(root: Path, dim: int) -> tuple[TimedEnv, list[Any], EnvDropTokenizer]:
    make_nav_world(root, CONNECTIVITY, render=False)
    graphs = load_nav_graphs(root / "connectivity")
    rng = np.random.default_rng(0)
    feats = {(s, vp): rng.standard_normal((36, dim)).astype(np.float32) for s, g in graphs.items() for vp in g}
    episodes = read_r2r(root / "R2R_train.json")
    tok = EnvDropTokenizer(build_envdrop_vocab((e.instruction for e in episodes), 1), 80)
    return TimedEnv(graphs, feats, max_action=35), episodes, tok


def _batch(episodes: list[Any], tok: EnvDropTokenizer, start: int, size: int) -> dict[str, Any]:
    eps = [episodes[(start + k) % len(episodes)] for k in range(size)]
    tokens, mask = pad_tokens([tok.encode(e.instruction) or [] for e in eps])
    return {"episodes": eps, "tokens": tokens, "token_mask": mask}


def _measure(env: TimedEnv, fn: Any, batches: list[dict[str, Any]]) -> dict[str, float]:
    fn(batches[0])  # warm-up: candidate and shortest-path caches, allocator
    env.seconds = 0.0
    start = time.perf_counter()
    for b in batches:
        fn(b)
    wall = time.perf_counter() - start
    n = sum(len(b["episodes"]) for b in batches)
    return {"episodes_per_s": round(n / wall, 1), "wall_s": round(wall, 2), "env_s": round(env.seconds, 2),
            "model_s": round(wall - env.seconds, 2), "env_fraction": round(env.seconds / wall, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--out", default="benchmarks/results/vln.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        env, episodes, tok = _setup(Path(tmp) / "world", args.dim)
    follower = build_model("envdrop_follower", "envdrop", vocab_size=tok.vocab_size, feature_dim=args.dim)
    optim = torch.optim.RMSprop(follower.parameters(), lr=1e-4)
    batches = [_batch(episodes, tok, k * args.batch, args.batch) for k in range(args.batches + 1)]

    def train_step(batch: dict[str, Any]) -> None:
        follower.train()
        loss, _ = envdrop_loss(follower, env, batch)
        optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(follower.parameters(), 40.0)
        optim.step()

    @torch.no_grad()
    def greedy(batch: dict[str, Any]) -> None:
        follower.eval()
        rollout(follower, env, batch, "argmax", train_rl=False)

    training = _measure(env, train_step, batches)
    evaluation = _measure(env, greedy, batches)
    write_json(args.out, {"benchmark": "vln", "batch": args.batch, "batches": args.batches, "feature_dim": args.dim,
                          "model": "envdrop_follower/envdrop", "max_action": 35,
                          "train_two_rollouts_and_backward": training, "greedy_eval": evaluation,
                          "note": "training = teacher-forced rollout + sampled rollout (IL + A2C) + backward + "
                                  "RMSprop step per batch; env = NavEnv reset/step incl. observations"})


if __name__ == "__main__":
    main()
