"""Evaluation of the VLN task: greedy follower rollouts → the R2R submission file + navigation metrics, and
greedy speaker decoding → BLEU against the path's instructions.

Submission format (R2R's, also written for RxR): [{"instr_id": str, "trajectory": [[viewpoint, heading,
elevation], ...]}], sorted by instr_id; `clipvil score r2r|rxr` scores it again from the files alone.
Speaker BLEU is EnvDrop's choice of speaker (best_val_unseen_bleu): corpus BLEU-4 of the decoded
instruction of each path against all reference instructions of that path, over EnvDrop's word split
(pycocoevalcap's BLEU scorer, without the PTB tokenizer).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from clipvil.common.atomic import atomic_write_json
from clipvil.data.nav import NavInstruction
from clipvil.data.nav_env import STOP, NavEnv
from clipvil.data.nav_text import InstructionTokenizer, split_sentence
from clipvil.engine.task import Batch
from clipvil.families.vln.envdrop import Follower, Speaker
from clipvil.families.vln.rollout import rollout, speaker_context
from clipvil.metrics.nav import DistanceTable, navigation_scores
from clipvil.nn.decoding import greedy_decode

SUBMISSION_FILE = "submission.json"
SPEAKER_FILE = "speaker_results.json"


def follower_trajectories(follower: Follower, env: NavEnv, batches: Iterable[Batch]) -> dict[str, list[list[Any]]]:
    """{instr_id: trajectory} of greedy (argmax) rollouts, no learning."""
    out: dict[str, list[list[Any]]] = {}
    for batch in batches:
        result = rollout(follower, env, batch, "argmax", train_rl=False)
        for instr_id, steps in zip(batch["ids"], result.trajectories):
            out[instr_id] = [[vp, float(h), float(e)] for vp, h, e in steps]
    return out


def forward_baseline(env: NavEnv, episodes: Sequence[Any], moves: int) -> dict[str, list[list[Any]]]:
    """The "walk forward" baseline: from the start heading, `moves` times move to the navigable candidate
    whose heading differs least from the direction of travel (the start heading, then the heading of the
    last move), stopping early when every candidate is more than 90 deg off it, then STOP. {instr_id:
    trajectory} in the submission format. It uses neither the instruction nor the views."""
    if not 0 <= moves < env.max_action:
        raise ValueError(f"forward_baseline: moves must be in 0..{env.max_action - 1}, got {moves}")
    obs = env.reset(episodes)
    heading = np.array([float(ep.heading) for ep in episodes])  # [B] direction of travel
    for _ in range(moves):
        actions = []
        for i, ep in enumerate(episodes):
            cands = env.candidates(ep.scan, obs.viewpoints[i])
            off = [abs(float(np.angle(np.exp(1j * (c.heading - heading[i]))))) for c in cands]
            if obs.stopped[i] or not cands or min(off) > np.pi / 2:
                actions.append(STOP)
                continue
            k = int(np.argmin(off))
            heading[i] = cands[k].heading
            actions.append(k)
        obs = env.step(actions)
        if env.done:
            break
    if not env.done:
        env.step([STOP] * len(episodes))
    return {ep.instr_id: [[vp, float(h), float(e)] for vp, h, e in steps]
            for ep, steps in zip(episodes, env.trajectories)}


def write_submission(trajectories: Mapping[str, Sequence[Any]], out_dir: Path) -> Path:
    """The official results file in out_dir."""
    rows = [{"instr_id": k, "trajectory": list(trajectories[k])} for k in sorted(trajectories)]
    path = Path(out_dir) / SUBMISSION_FILE
    atomic_write_json(path, rows)
    return path


def navigation_metrics(trajectories: Mapping[str, Sequence[Any]], episodes: Sequence[NavInstruction],
                       distances: Mapping[str, DistanceTable], merge_repeats: bool) -> dict[str, float]:
    """clipvil.metrics.nav's summary (tl, ne, oracle_error, sr, osr, spl, ndtw, sdtw, cls, steps, n)."""
    refs = {ep.instr_id: ep for ep in episodes}
    return navigation_scores(trajectories, refs, distances, merge_repeats=merge_repeats).summary


def speaker_loss(speaker: Speaker, env: NavEnv, batch: Batch, pad: int) -> tuple[torch.Tensor, dict[str, float]]:
    """Teacher-forced cross-entropy of the instruction tokens after <BOS> (mean over real tokens, EnvDrop's
    `teacher_forcing`) and the word accuracy."""
    tokens = batch["tokens"]  # [B, T]
    context = speaker_context(env, batch["episodes"], tokens.device)
    logits = speaker(context, tokens)  # [B, T, V]
    pred, target = logits[:, :-1], tokens[:, 1:]  # [B, T-1, V], [B, T-1]
    loss = F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1), ignore_index=pad)
    real = target != pad  # [B, T-1]
    accuracy = ((pred.argmax(-1) == target) & real).sum() / real.sum().clamp(min=1)
    return loss, {"speaker_loss": float(loss.detach()), "word_accuracy": float(accuracy)}


def decode_instructions(speaker: Speaker, env: NavEnv, episodes: Sequence[Any], tok: InstructionTokenizer,
                        max_len: int, device: torch.device, env_drop: torch.Tensor | None = None) -> torch.Tensor:
    """Greedy instructions for the shortest paths of `episodes` as follower input: [B, T] long starting
    with <BOS>; a row cut at max_len ends with <EOS> (EnvDrop's back-translation)."""
    context = speaker_context(env, episodes, device, env_drop)
    out = greedy_decode(speaker, context, len(episodes), bos=tok.bos_id, eos=tok.eos_id, max_len=max_len,
                        pad=tok.pad_id)
    rows = out.tokens  # [B, L]
    bos = rows.new_full((rows.shape[0], 1), tok.bos_id)  # [B, 1]
    tokens = torch.cat([bos, rows], dim=1)  # [B, L + 1]
    cut = out.lengths == max_len  # [B] rows that ran out of length
    ended = rows.gather(1, (out.lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1) == tok.eos_id  # [B]
    tokens[cut & ~ended, -1] = tok.eos_id
    return tokens


def speaker_metrics(speaker: Speaker, env: NavEnv, batches: Iterable[Batch], tok: InstructionTokenizer,
                    references: Mapping[int, Sequence[str]], max_len: int, out_dir: Path | None
                    ) -> dict[str, float]:
    """Loss, word accuracy and BLEU-4 of greedy decoding (one instruction per path) on a split."""
    from pycocoevalcap.bleu.bleu import Bleu

    losses, accs, weights = [], [], []
    generated: dict[int, str] = {}
    for batch in batches:
        loss, logs = speaker_loss(speaker, env, batch, tok.pad_id)
        n = float((batch["tokens"][:, 1:] != tok.pad_id).sum())
        losses.append(float(loss) * n)
        accs.append(logs["word_accuracy"] * n)
        weights.append(n)
        todo = [(i, ep) for i, ep in enumerate(batch["episodes"]) if ep.path_id not in generated]
        if todo:
            rows = decode_instructions(speaker, env, [ep for _, ep in todo], tok, max_len, batch["tokens"].device)
            for (_, ep), row in zip(todo, rows.tolist()):
                generated[ep.path_id] = tok.decode(row)
    if out_dir is not None:
        atomic_write_json(Path(out_dir) / SPEAKER_FILE,
                          [{"path_id": k, "instruction": v} for k, v in sorted(generated.items())])
    res = {k: [" ".join(split_sentence(v)) or "<empty>"] for k, v in generated.items()}
    gts = {k: [" ".join(split_sentence(r)) for r in references[k]] for k in generated}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    total = max(sum(weights), 1.0)
    return {"bleu": float(bleu[3]), "bleu1": float(bleu[0]), "speaker_loss": sum(losses) / total,
            "word_accuracy": sum(accs) / total, "n_paths": float(len(generated))}
