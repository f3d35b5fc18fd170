"""EnvDrop's navigation rollout: imitation (teacher forcing) and A2C over clipvil.data.nav_env.NavEnv.

One call runs a batch of episodes to the end with the follower (clipvil.families.vln.envdrop.Follower), as
R2R-EnvDrop's `Seq2SeqAgent.rollout` does:

- every step: the follower scores the candidates (+ STOP); the imitation loss adds the cross-entropy
  (summed over the batch) of the teacher action (next candidate on the shortest path, STOP at the goal);
- the action is the teacher's ("teacher"), the argmax ("argmax") or a sample ("sample");
- A2C ("sample"/"argmax", train_rl): reward per step +2 / -2 for STOP within / beyond 3 m of the goal,
  otherwise the sign of the decrease of the shortest-path distance (+1 closer, -1 farther; 0 when it does
  not change, where EnvDrop raises); returns R_t = r_t + gamma R_{t+1}, bootstrapped with the critic's
  (detached) value of the last state for episodes that never stopped; loss = sum over live steps of
  -log p(a_t) (R_t - V_t).detach() + 0.5 (R_t - V_t)^2 - entropy_weight * H_t (the entropy term in
  "sample" only), divided by the number of live steps ("total", EnvDrop's default).

`il_loss` is the summed cross-entropy divided by the batch size, unweighted; `envdrop_loss` combines the
two rollouts of EnvDrop's `train(feedback="sample")`: ml_weight * IL of a teacher-forced rollout + the A2C
loss of a sampled one (0.2 in R2R, 0.4 in CLIP-ViL's RxR runs). EnvDrop drew a new minibatch for each of
the two rollouts; here both run on the given batch. Randomness (dropout, sampling) comes from torch's
global generator, or `generator` for the sampling: the same seed gives the same losses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from clipvil.data.nav_env import IGNORE, STOP, NavEnv, NavEpisodeLike, NavObservation, Step
from clipvil.families.vln.envdrop import Follower, FollowerState, SpeakerContext, apply_env_drop

MODES = ("teacher", "argmax", "sample")


@dataclass(frozen=True)
class RolloutConfig:
    """Loss settings of EnvDrop's training (r2r_src/param.py and CLIP-ViL's run scripts)."""

    ml_weight: float = 0.2  # IL weight beside A2C (--mlWeight: 0.2 R2R, 0.4 RxR)
    teacher_weight: float = 1.0  # IL weight of teacher-only training (--teacherWeight)
    gamma: float = 0.9  # discount of the A2C returns (--gamma)
    entropy_weight: float = 0.01  # entropy bonus in "sample" mode
    normalize: str = "total"  # A2C loss / live steps ("total"), / batch size ("batch"), or not ("none")
    success_radius: float = 3.0  # metres: STOP within it earns +stop_reward, else -stop_reward
    stop_reward: float = 2.0  # magnitude of the STOP reward

    def __post_init__(self) -> None:
        if self.normalize not in ("total", "batch", "none"):
            raise ValueError(f"RolloutConfig: normalize must be total, batch or none, got {self.normalize!r}")

    @classmethod
    def preset(cls, name: str) -> RolloutConfig:
        """'r2r' (mlWeight 0.2) or 'rxr' (mlWeight 0.4)."""
        table = {"r2r": cls(), "rxr": cls(ml_weight=0.4)}
        if name not in table:
            raise ValueError(f"unknown rollout preset {name!r}; known: {sorted(table)}")
        return table[name]


@dataclass
class RolloutResult:
    """What one rollout gives back."""

    il_loss: torch.Tensor  # scalar: summed teacher cross-entropy / batch size (unweighted)
    rl_loss: torch.Tensor | None  # scalar A2C loss, None in "teacher" mode or without train_rl
    trajectories: list[list[Step]]  # per episode, (viewpoint, heading, elevation) steps
    logs: dict[str, float] = field(default_factory=dict)


@dataclass
class RolloutTape:
    """Per-step records of a rollout for A2C (a2c_loss)."""

    hidden: list[torch.Tensor] = field(default_factory=list)  # [B, H] each
    log_probs: list[torch.Tensor] = field(default_factory=list)  # [B] each
    entropies: list[torch.Tensor] = field(default_factory=list)  # [B] each
    rewards: list[np.ndarray] = field(default_factory=list)  # [B] each
    masks: list[np.ndarray] = field(default_factory=list)  # [B] each, 1 while the episode is live


def _inputs(obs: NavObservation, device: torch.device, env_drop: torch.Tensor | None, angle_dim: int
            ) -> tuple[torch.Tensor, ...]:
    action = torch.from_numpy(obs.heading_feature).to(device)  # [B, A]
    panorama = torch.from_numpy(obs.panorama).to(device)  # [B, 36, F]
    candidates = torch.from_numpy(obs.candidates).to(device)  # [B, K, F]
    if env_drop is not None:
        panorama = apply_env_drop(panorama, env_drop, angle_dim)  # [B, 36, F]
        candidates = apply_env_drop(candidates, env_drop, angle_dim)  # [B, K, F]
    return action, panorama, candidates, torch.from_numpy(obs.candidate_mask).to(device)  # mask [B, K]


def choose_action(mode: str, logits: torch.Tensor, target: torch.Tensor, tape: RolloutTape,
            generator: torch.Generator | None) -> torch.Tensor:
    """The actions [B] of this step; records log-probs (and entropies when sampling)."""
    if mode == "teacher":
        return target
    log_p = F.log_softmax(logits, dim=1)  # [B, K]
    if mode == "argmax":
        action = logits.argmax(dim=1)  # [B]
    else:
        action = torch.multinomial(log_p.detach().exp(), 1, generator=generator).squeeze(1)  # [B]
        tape.entropies.append(torch.distributions.Categorical(logits=logits).entropy())  # [B]
    tape.log_probs.append(log_p.gather(1, action.unsqueeze(1)).squeeze(1))  # [B]
    return action


def _rewards(cfg: RolloutConfig, actions: np.ndarray, was_stopped: np.ndarray, last_dist: np.ndarray,
             dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """EnvDrop's reward shaping for one step (actions: candidate index or STOP) -> (reward [B], live [B])."""
    stop = actions == STOP
    moved = np.sign(last_dist - dist)  # [B] +1 closer, -1 farther
    at_goal = np.where(dist < cfg.success_radius, cfg.stop_reward, -cfg.stop_reward)
    reward = np.where(stop, at_goal, moved)
    live = ~was_stopped
    return np.where(live, reward, 0.0).astype(np.float32), live.astype(np.float32)


def a2c_loss(follower: Follower, tape: RolloutTape, last_value: torch.Tensor, cfg: RolloutConfig, sampled: bool
             ) -> tuple[torch.Tensor, dict[str, float]]:
    """EnvDrop's A2C loss of a recorded rollout: discounted returns bootstrapped from `last_value`, the policy
    gradient with the critic's advantage, 0.5 x the critic's squared error, minus the entropy bonus when sampled;
    normalised as cfg.normalize says. Returns (loss, logs)."""
    device = last_value.device
    ret = last_value.detach()  # [B] 0 where the episode stopped
    loss = last_value.new_zeros(())
    critic, total = 0.0, 0.0
    for t in range(len(tape.rewards) - 1, -1, -1):
        ret = ret * cfg.gamma + torch.from_numpy(tape.rewards[t]).to(device)  # [B]
        mask = torch.from_numpy(tape.masks[t]).to(device)  # [B]
        value = follower.value(tape.hidden[t])  # [B]
        advantage = (ret - value).detach()  # [B]
        loss = loss + (-tape.log_probs[t] * advantage * mask).sum()
        value_loss = ((ret - value) ** 2 * mask).sum()
        loss = loss + 0.5 * value_loss
        if sampled:
            loss = loss + (-cfg.entropy_weight * tape.entropies[t] * mask).sum()
        critic += float(value_loss.detach())
        total += float(mask.sum())
    batch = float(last_value.shape[0])
    divisor = {"total": max(total, 1.0), "batch": batch, "none": 1.0}[cfg.normalize]
    return loss / divisor, {"critic_loss": critic / max(total, 1.0), "live_steps": total}


def rollout(follower: Follower, env: NavEnv, batch: Mapping[str, Any], mode: str, *,
            config: RolloutConfig = RolloutConfig(), train_rl: bool = True,
            env_drop: torch.Tensor | None = None, generator: torch.Generator | None = None) -> RolloutResult:
    """Runs batch["episodes"] (NavInstruction-like, B) with instructions batch["tokens"] [B, T] (long;
    batch["token_mask"] [B, T] bool, default tokens != 0) to the end in `env`.

    mode: "teacher", "argmax" or "sample". env_drop: channel masks [B, D] from
    `follower.env_drop_mask` (environmental dropout; the per-step feature dropout is then skipped).
    """
    if mode not in MODES:
        raise ValueError(f"rollout: mode must be one of {MODES}, got {mode!r}")
    tokens = batch["tokens"]
    mask = batch.get("token_mask")
    mask = tokens != 0 if mask is None else mask
    angle_dim = follower.cfg.angle_dim
    obs = env.reset(batch["episodes"])
    if obs.panorama.shape[2] != follower.feature_dim + angle_dim:
        raise ValueError(f"rollout: the env gives views of width {obs.panorama.shape[2]}, the follower "
                         f"expects {follower.feature_dim} + {angle_dim} (feature_dim + angle_dim)")
    ctx, state = follower.encode(tokens, mask)  # [B, T, H]
    tape, il_sum = RolloutTape(), tokens.new_zeros((), dtype=torch.float32)
    last_dist = obs.distance
    while not env.done:
        inputs = _inputs(obs, tokens.device, env_drop, angle_dim)
        logits, state, h = follower.step(state, *inputs, ctx, mask, already_dropped=env_drop is not None)
        tape.hidden.append(h)
        target = torch.from_numpy(obs.teacher).to(tokens.device)  # [B]
        il_sum = il_sum + F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="sum")
        actions = choose_action(mode, logits, target, tape, generator).detach().cpu().numpy()  # [B]
        stop = obs.stopped | (actions == IGNORE) | (actions == obs.n_candidates)
        actions = np.where(stop, STOP, actions)  # [B]
        was_stopped = obs.stopped
        obs = env.step(actions)
        reward, live = _rewards(config, actions, was_stopped, last_dist, obs.distance)
        tape.rewards.append(reward)
        tape.masks.append(live)
        last_dist = obs.distance
    batch_size = tokens.shape[0]
    logs = {"il_loss": float(il_sum.detach()) / batch_size, "steps": float(len(tape.rewards)),
            "success": float((obs.distance < config.success_radius).mean()),
            "reward": float(np.sum(tape.rewards)) / batch_size}
    rl_loss = None
    if train_rl and mode != "teacher":
        last_value = _bootstrap(follower, obs, state, ctx, mask, env_drop)
        rl_loss, rl_logs = a2c_loss(follower, tape, last_value, config, sampled=mode == "sample")
        logs.update(rl_logs, rl_loss=float(rl_loss.detach()))
        if tape.entropies:
            logs["entropy"] = float(torch.stack(tape.entropies).detach().mean())
    return RolloutResult(il_sum / batch_size, rl_loss, [list(t) for t in env.trajectories], logs)


def _bootstrap(follower: Follower, obs: NavObservation, state: FollowerState, ctx: torch.Tensor,
               mask: torch.Tensor, env_drop: torch.Tensor | None) -> torch.Tensor:
    """The critic's value [B] of the final state for episodes still running (0 for stopped ones)."""
    live = torch.from_numpy(~obs.stopped).to(ctx.device)  # [B]
    if not bool(live.any()):
        return ctx.new_zeros(live.shape[0])
    inputs = _inputs(obs, ctx.device, env_drop, follower.cfg.angle_dim)
    _, _, h = follower.step(state, *inputs, ctx, mask, already_dropped=env_drop is not None)
    return (follower.value(h) * live).detach()  # [B]


def envdrop_loss(follower: Follower, env: NavEnv, batch: Mapping[str, Any], *,
                 config: RolloutConfig = RolloutConfig(), env_drop: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """EnvDrop's training loss (feedback "sample"): ml_weight * IL (teacher-forced rollout) + A2C (sampled
    rollout); logs are prefixed "teacher/" and "sample/"."""
    loss = torch.zeros((), device=batch["tokens"].device)
    logs: dict[str, float] = {}
    if config.ml_weight != 0:
        teacher = rollout(follower, env, batch, "teacher", config=config, env_drop=env_drop)
        loss = loss + config.ml_weight * teacher.il_loss
        logs.update({f"teacher/{k}": v for k, v in teacher.logs.items()})
    sample = rollout(follower, env, batch, "sample", config=config, env_drop=env_drop, generator=generator)
    logs.update({f"sample/{k}": v for k, v in sample.logs.items()})
    return loss + (sample.rl_loss if sample.rl_loss is not None else 0.0), logs


def speaker_context(env: NavEnv, episodes: Sequence[NavEpisodeLike], device: torch.device | str = "cpu",
                    env_drop: torch.Tensor | None = None) -> SpeakerContext:
    """The speaker's input for the shortest paths of `episodes` (EnvDrop's `from_shortest_path`): the
    teacher walks each path; step t holds the panorama seen there and the feature of the candidate taken
    (zeros at the final STOP step), so a path of n viewpoints has n steps. `env_drop` [B, D] applies an
    environmental-dropout mask (the follower's, when back-translating) and marks the context as dropped."""
    obs = env.reset(episodes)
    actions, panoramas, live = [], [], []
    while True:
        moving = ~obs.stopped & (obs.teacher != obs.n_candidates)  # [B]
        chosen = np.zeros((len(episodes), obs.candidates.shape[2]), dtype=np.float32)  # [B, F]
        rows = np.nonzero(moving)[0]
        chosen[rows] = obs.candidates[rows, obs.teacher[rows]]
        actions.append(chosen)
        panoramas.append(obs.panorama)
        live.append(~obs.stopped)
        if not moving.any() or env.done:
            break
        obs = env.step(np.where(moving, obs.teacher, STOP))
    ctx = SpeakerContext(torch.from_numpy(np.stack(actions, 1)).to(device),  # [B, L, F]
                         torch.from_numpy(np.stack(panoramas, 1)).to(device),  # [B, L, 36, F]
                         torch.from_numpy(np.stack(live, 1)).to(device))  # [B, L]
    if env_drop is None:
        return ctx
    dim = env.angle_dim
    return SpeakerContext(apply_env_drop(ctx.actions, env_drop, dim),
                          apply_env_drop(ctx.panoramas, env_drop, dim), ctx.mask, already_dropped=True)
