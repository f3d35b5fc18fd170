"""EnvDrop rollout on a hand-built graph: the imitation loss against features built by hand here, the A2C
update direction, and determinism."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipvil.data.nav import NavInstruction
from clipvil.data.nav_env import NavEnv, NavObservation
from clipvil.families.vln.envdrop import Follower, FollowerConfig, Speaker, SpeakerConfig
from clipvil.families.vln.rollout import RolloutConfig, envdrop_loss, rollout, speaker_context

D, A, V = 6, 128, 17
SCAN = "toy"
#   d (-2,0) -- a (0,0) -- b (0,2) -- c (2,2); everything at camera height 1.5
POSITIONS = {"a": (0.0, 0.0), "b": (0.0, 2.0), "c": (2.0, 2.0), "d": (-2.0, 0.0)}
# by hand: (neighbour, its view, its absolute heading in degrees) in EnvDrop's order (first view that sees it)
CANDIDATES = {
    "a": [("b", 12, 0.0), ("d", 21, 270.0)],  # b first seen in view 0, d in view 8
    "b": [("c", 15, 90.0), ("a", 18, 180.0)],  # c first seen in view 2, a in view 5
    "c": [("b", 21, 270.0)],
    "d": [("a", 15, 90.0)],
}


@pytest.fixture(scope="module")
def graph() -> nx.Graph:
    g = nx.Graph()
    for name, (x, y) in POSITIONS.items():
        g.add_node(name, position=np.array([x, y, 1.5]))
    for u, v in (("a", "b"), ("b", "c"), ("a", "d")):
        g.add_edge(u, v, weight=math.dist(POSITIONS[u], POSITIONS[v]))
    return g


@pytest.fixture(scope="module")
def features() -> dict[tuple[str, str], np.ndarray]:
    rng = np.random.default_rng(3)
    return {(SCAN, n): rng.standard_normal((36, D)).astype(np.float32) for n in POSITIONS}


def _episode(path: str, heading: float, k: int = 0) -> NavInstruction:
    return NavInstruction(f"{path}_{k}", k, SCAN, tuple(path), heading, "walk", "en")


def _angles(heading_deg: float, elevation_deg: float) -> torch.Tensor:
    h, e = math.radians(heading_deg), math.radians(elevation_deg)
    return torch.tensor([math.sin(h), math.cos(h), math.sin(e), math.cos(e)] * (A // 4))


def _hand_obs(features: dict, at: str, agent_deg: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(agent angle feature [A], panorama [36, D+A], candidates + STOP [n+1, D+A]) built from the table."""
    feats = torch.from_numpy(features[(SCAN, at)])
    pano = torch.stack([torch.cat([feats[v], _angles(30 * (v % 12) - agent_deg, 30 * (v // 12 - 1))])
                        for v in range(36)])
    cands = [torch.cat([feats[view], _angles(deg - agent_deg, 0.0)]) for _, view, deg in CANDIDATES[at]]
    return _angles(agent_deg, 0.0), pano, torch.stack(cands + [torch.zeros(D + A)])


def _follower(seed: int = 0) -> Follower:
    torch.manual_seed(seed)
    return Follower(FollowerConfig.preset("tiny"), vocab_size=V, feature_dim=D)


def _batch(episodes: list[NavInstruction]) -> dict:
    tokens = torch.tensor([[3, 4, 5, 6, 7], [8, 9, 10, 0, 0]][: len(episodes)])
    return {"episodes": episodes, "tokens": tokens}


def test_imitation_loss_matches_a_hand_built_rollout(graph: nx.Graph, features: dict) -> None:
    m = _follower().eval()
    episodes = [_episode("abc", 0.0), _episode("da", math.pi / 2, 1)]
    batch = _batch(episodes)
    env = NavEnv({SCAN: graph}, features, max_action=10)
    result = rollout(m, env, batch, "teacher")
    assert result.rl_loss is None
    assert result.trajectories[0][-1][0] == "c" and result.trajectories[1][-1][0] == "a"
    # by hand: episode 0 at a facing 0 -> b (cand 0); at b facing 0 -> c (cand 0, view 15);
    #          at c facing 90: STOP
    #          episode 1 at d facing 90 -> a (cand 0); at a facing 90: STOP (index 2)
    plan = [[("a", 0.0, 0), ("b", 0.0, 0), ("c", 90.0, 1)], [("d", 90.0, 0), ("a", 90.0, 2)]]
    mask = batch["tokens"] != 0
    with torch.no_grad():
        ctx, state = m.encode(batch["tokens"], mask)
        total = 0.0
        for t in range(3):
            rows = [_hand_obs(features, at, deg) for at, deg, _ in (p[min(t, len(p) - 1)] for p in plan)]
            k = max(r[2].shape[0] for r in rows)
            cands = torch.zeros(2, k, D + A)
            cmask = torch.zeros(2, k, dtype=torch.bool)
            for i, r in enumerate(rows):
                cands[i, : r[2].shape[0]] = r[2]
                cmask[i, : r[2].shape[0]] = True
            action, pano = torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows])
            logits, state, _ = m.step(state, action, pano, cands, cmask, ctx, mask)
            for i, p in enumerate(plan):
                if t < len(p):
                    total += float(-F.log_softmax(logits[i], -1)[p[t][2]])
    assert float(result.il_loss.detach()) == pytest.approx(total / 2, rel=1e-5)
    assert result.logs["steps"] == 3 and result.logs["success"] == 1.0


def _tensors(obs: NavObservation) -> list[torch.Tensor]:
    arrays = (obs.heading_feature, obs.panorama, obs.candidates, obs.candidate_mask)
    return [torch.from_numpy(x) for x in arrays]


def _start_logp(m: Follower, env: NavEnv, batch: dict, action: int) -> float:
    obs = env.reset(batch["episodes"])
    mask = batch["tokens"] != 0
    ctx, state = m.encode(batch["tokens"], mask)
    t = _tensors(obs)
    logits, _, _ = m.step(state, *t, ctx, mask)
    return float(F.log_softmax(logits, -1)[0, action].detach())


@pytest.mark.parametrize("wanted", ["b", "d"])
def test_a2c_raises_rewarded_and_lowers_penalised_actions(graph: nx.Graph, features: dict,
                                                          wanted: str) -> None:
    # one step from a towards goal c: moving to b earns +1, to d -1; a zero critic makes advantage = reward
    env = NavEnv({SCAN: graph}, features, max_action=1)
    batch = _batch([_episode("abc", 0.0)])
    cfg = RolloutConfig(entropy_weight=0.0)
    for seed in range(200):
        m = _follower().eval()
        torch.nn.init.zeros_(m.critic.state2value[3].weight)
        torch.nn.init.zeros_(m.critic.state2value[3].bias)
        result = rollout(m, env, batch, "sample", config=cfg, generator=torch.Generator().manual_seed(seed))
        if result.trajectories[0][-1][0] == wanted:
            break
    else:
        pytest.fail(f"no seed sampled the move to {wanted}")
    action = [c[0] for c in CANDIDATES["a"]].index(wanted)
    assert result.logs["reward"] == (1.0 if wanted == "b" else -1.0)
    before = _start_logp(m, env, batch, action)
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    opt.zero_grad()
    result.rl_loss.backward()
    opt.step()
    after = _start_logp(m, env, batch, action)
    assert (after > before) if wanted == "b" else (after < before)


# the seeds give policies that: STOP at once; move then STOP; move twice (bootstrapped)
@pytest.mark.parametrize("seed", [1, 0, 3])
def test_returns_are_discounted_with_a_bootstrapped_value(graph: nx.Graph, features: dict, seed: int) -> None:
    # argmax rollout of at most 2 actions; the loss by hand from the log-probs, values and rewards seen here
    m = _follower(seed).eval()
    env = NavEnv({SCAN: graph}, features, max_action=2)
    batch = _batch([_episode("abc", 0.0)])
    cfg = RolloutConfig(gamma=0.5)
    result = rollout(m, env, batch, "argmax", config=cfg)
    places = [s[0] for s in result.trajectories[0]]
    dist = {"a": 4.0, "b": 2.0, "c": 0.0, "d": 6.0}  # shortest-path metres to c
    obs = env.reset(batch["episodes"])
    mask = batch["tokens"] != 0
    ctx, state = m.encode(batch["tokens"], mask)
    logps, values, rewards, here, live = [], [], [], "a", True
    with torch.no_grad():
        for _ in range(3):  # two actions, then the bootstrap step
            t = _tensors(obs)
            logits, state, h = m.step(state, *t, ctx, mask)
            values.append(float(m.value(h)[0]))
            if len(rewards) == 2 or env.done:
                break
            a = int(logits.argmax(-1))
            logps.append(float(F.log_softmax(logits, -1)[0, a]))
            obs = env.step([a])
            if obs.stopped[0]:
                rewards.append(2.0 if dist[here] < 3 else -2.0)
                live = False
                break
            nxt = obs.viewpoints[0]
            rewards.append(float(np.sign(dist[here] - dist[nxt])))
            here = nxt
    assert places[-1] == here
    ret = values[-1] if live and len(values) > len(rewards) else 0.0
    loss, steps = 0.0, len(rewards)
    for t in range(steps - 1, -1, -1):
        ret = ret * 0.5 + rewards[t]
        loss += -logps[t] * (ret - values[t]) + 0.5 * (ret - values[t]) ** 2
    assert float(result.rl_loss.detach()) == pytest.approx(loss / steps, rel=1e-4)


def test_envdrop_loss_is_deterministic_under_a_seed(graph: nx.Graph, features: dict) -> None:
    episodes = [_episode("abc", 0.0), _episode("da", math.pi / 2, 1)]

    def run() -> tuple[float, dict, list]:
        m = _follower(2).train()
        env = NavEnv({SCAN: graph}, features, max_action=5)
        torch.manual_seed(7)
        drop = m.env_drop_mask(2)
        loss, logs = envdrop_loss(m, env, _batch(episodes), config=RolloutConfig.preset("rxr"), env_drop=drop,
                                  generator=torch.Generator().manual_seed(11))
        loss.backward()
        return float(loss.detach()), logs, [p.grad.clone() for p in m.parameters() if p.grad is not None]

    (l1, g1, grads1), (l2, g2, grads2) = run(), run()
    assert l1 == l2 and g1 == g2 and "teacher/il_loss" in g1 and "sample/rl_loss" in g1
    assert len(grads1) == len(grads2) and all(torch.equal(a, b) for a, b in zip(grads1, grads2))
    assert all(torch.isfinite(g).all() for g in grads1)
    with pytest.raises(ValueError, match="mode"):
        rollout(_follower(), NavEnv({SCAN: graph}, features), _batch(episodes), "beam")


def test_speaker_context_walks_the_shortest_paths(graph: nx.Graph, features: dict) -> None:
    env = NavEnv({SCAN: graph}, features)
    ctx = speaker_context(env, [_episode("abc", 0.0), _episode("da", math.pi / 2, 1)])
    assert ctx.mask.tolist() == [[True, True, True], [True, True, False]]
    # by hand (see CANDIDATES): a facing 0 takes b; b facing 0 takes c; c: STOP. d facing 90 takes a; a: STOP
    walks = [[("a", 0.0, 0), ("b", 0.0, 0), ("c", 90.0, None)], [("d", 90.0, 0), ("a", 90.0, None)]]
    for i, steps in enumerate(walks):
        for t, (at, deg, k) in enumerate(steps):
            _, pano, cands = _hand_obs(features, at, deg)
            torch.testing.assert_close(ctx.panoramas[i, t], pano)
            torch.testing.assert_close(ctx.actions[i, t], cands[k] if k is not None else torch.zeros(D + A))
    speaker = Speaker(SpeakerConfig.preset("tiny"), vocab_size=V, feature_dim=D).eval()
    assert speaker(ctx, torch.tensor([[1, 5, 6, 2], [1, 7, 2, 0]])).shape == (2, 4, V)
    dropped = speaker_context(env, [_episode("abc", 0.0)], env_drop=torch.zeros(1, D))
    assert dropped.already_dropped and not dropped.panoramas[..., :D].any()


def test_feature_width_mismatch_is_reported(graph: nx.Graph, features: dict) -> None:
    m = Follower(FollowerConfig.preset("tiny"), vocab_size=V, feature_dim=D + 1)
    with pytest.raises(ValueError, match="width 134"):
        rollout(m, NavEnv({SCAN: graph}, features), _batch([_episode("abc", 0.0)]), "teacher")
