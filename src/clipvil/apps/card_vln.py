"""`clipvil card` for the navigation recipes (task "vln": the EnvDrop follower, speaker and back-translation
runs of configs/vln/, R2R and RxR): the agent over cached view features, one episode as a training sample.

The recipes read cached view features (36 views x D per viewpoint, `clipvil import-views` / `extract --preset
views`), so only the agent is counted; the visual tower is not. D comes from the encoder registry when
`task.feature_encoder` names a tower (its pooled embedding width, what the view stores keep) and otherwise from
`RELEASED_VIEWS` (the released view-feature TSVs). The model is built from the recipe (meta device, then
materialised); each phase's loss runs the real model's modules over random tensors at an episode's shapes,
as `clipvil.families.vln.task` / `vln_rollout` do per step:

- follower (feedback "sample"): the instruction encoder over the instruction's ids, a teacher-forced rollout
  (IL, x ml_weight) and a sampled rollout (A2C: critic on every step's state, the bootstrap value, entropy);
  each rollout encodes the instruction itself, as EnvDrop's two rollouts do; feedback "teacher": IL only;
- speaker: teacher-forced decoding of the instruction given the path (encoder over the path's panoramas);
- back-translation: half of every update is a real batch (the follower's loss), half an augmented one (the
  frozen speaker greedily writes the instruction under one environmental-dropout mask — forward only — then
  the follower's loss with aug_ml_weight under the same mask): two phases of share 0.5 each.

Without the environment the run-time episode lengths cannot be reproduced exactly: the number of decisions
per rollout, the candidates per step and the instruction length are stated assumptions (`EpisodeShape`),
the R2R ones measured on the real R2R training split (the tests re-derive them from ../shared/data).
Every step runs for every episode of a batch until the batch is done (the env keeps stopped episodes in the
tensors), so the batch's longest episode sets the cost of all.

The EnvDrop encoders and the speaker's decoder are LSTMs: their FLOPs are counted through the formulas
`clipvil.apps.card_measure` registers for the fused LSTM kernels.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clipvil.apps.card_parts import (
    CardOptions,
    CardParts,
    CardPhase,
    embedding_params,
    materialise,
    no_random_weights_warning,
    register_card,
)
from clipvil.data.nav_env import N_VIEWS
from clipvil.data.nav_text import EnvDropTokenizer
from clipvil.encoders import build_encoder
from clipvil.engine.config import RunConfig
from clipvil.engine.models import build_model
from clipvil.families.vln.envdrop import Follower, Speaker, SpeakerConfig, SpeakerContext, apply_env_drop
from clipvil.families.vln.rollout import RolloutConfig, RolloutTape, a2c_loss, choose_action

# released view-feature TSVs (the stems `clipvil import-views` records as the encoder) -> (CLIP tower whose pooled
# embedding the file holds, or None; width when no tower says it)
RELEASED_VIEWS: dict[str, tuple[str | None, int | None]] = {
    "CLIP-ViT-B-32-views": ("ViT-B-32", None),
    "CLIP-ResNet-50-views": ("RN50", None),
    "CLIP-ResNet-101-views": ("RN101", None),
    "CLIP-ResNet-50x4-views": ("RN50x4", None),
    "ResNet-152-imagenet": (None, 2048),
}
VIEWS_SOURCE_CLIP = ("CLIP-ViL-VLN's view TSVs, nlp.cs.unc.edu/data/vln_clip/features, hold CLIP's pooled image "
                     "embedding, encode_image, of each view")
VIEWS_SOURCE_IMAGENET = ("R2R-EnvDrop's ResNet-152-imagenet.tsv: the pool5 of an ImageNet ResNet-152, He et al. 2016; "
                         "EnvDrop's feature_size 2048")

# Episode shapes measured on ../shared/data/r2r/R2R_train.json (batches of 64, EnvDrop's train_vocab.txt,
# clipvil.data.nav_env over the shared connectivity graphs); tests/apps/test_card_vln.py re-derives them
R2R_TEACHER_DECISIONS = 7  # the longest shortest path of a batch: 6 moves + STOP (every batch of 64 has one)
R2R_CANDIDATE_SLOTS = 11  # candidate slots per step: the batch's widest viewpoint + STOP (mean 11.3; 4.5 real)
R2R_BATCH_TOKENS = 69  # instruction ids of a batch: its longest instruction (mean over batches; cap 80)
R2R_PATH_STEPS = 7  # speaker: steps of a batch's longest path (a path of n viewpoints has n steps)
ENVDROP_VOCAB = 992  # EnvDrop's train_vocab.txt: 991 words + <BOS> (clip-vil/CLIP-ViL, CLIP-ViL-VLN)

# R2R (Anderson et al., CVPR 2018): split -> (instructions, paths); checked against shared/data/r2r
R2R_SIZES: dict[str, tuple[int, int]] = {"train": (14_039, 4_675), "val_seen": (1_021, 340),
                                         "val_unseen": (2_349, 783), "test": (4_173, 1_391)}
R2R_SOURCE = "R2R (Anderson et al., CVPR 2018), R2R_<split>.json of tasks/R2R/data (as in ../shared/data/r2r)"
RXR_SOURCE = ("RxR (Ku et al., EMNLP 2020), google-research-datasets/RxR: 126k instructions in English, Hindi and "
              "Telugu; the per-language split sizes are not known to the card")


# --------------------------------------------------------------------------------------- recipe facts


def view_dim(feature_encoder: str) -> tuple[int, str]:
    """(D, how) of the view features a recipe names: a registry tower's pooled width, or RELEASED_VIEWS."""
    if not feature_encoder:
        raise ValueError("card: the recipe sets no task.feature_encoder; pass one, e.g. "
                         "task.feature_encoder=CLIP-ResNet-50-views or task.feature_encoder=RN50")
    tower_name, width = RELEASED_VIEWS.get(feature_encoder, (feature_encoder, None))
    if tower_name is None:
        assert width is not None
        return width, f"{feature_encoder}: {width}-d views ({VIEWS_SOURCE_IMAGENET})"
    try:
        with no_random_weights_warning(), torch.device("meta"):
            tower = build_encoder(tower_name)
    except ValueError as err:
        raise ValueError(f"card: task.feature_encoder {feature_encoder!r} is neither a released view file "
                         f"({', '.join(RELEASED_VIEWS)}) nor an encoder ({err})") from None
    if tower.embed_dim is None:
        raise ValueError(f"card: encoder {tower_name} has no pooled embedding (the view stores keep it)")
    where = VIEWS_SOURCE_CLIP if feature_encoder in RELEASED_VIEWS else "the encoder registry"
    return int(tower.embed_dim), f"{feature_encoder}: {tower_name}'s {tower.embed_dim}-d pooled embedding ({where})"


def vocabulary(task: Any) -> tuple[int, str, bool]:
    """(size, how, assumed) of the instruction vocabulary."""
    if task.tokenizer == "subword":
        return (task.subword_vocab_size, (f"{task.subword_vocab_size:,} subword ids assumed (the WordPiece trainer's "
                "target size, task.subword_vocab_size; the trained vocabulary can be smaller)"), True)
    if task.vocab is not None and Path(task.vocab).is_file():
        size = EnvDropTokenizer.from_file(task.vocab, task.max_input).vocab_size
        return size, f"{size} words: the size of {task.vocab} (+ <BOS>)", False
    if task.vocab is not None:
        return ENVDROP_VOCAB, (f"{ENVDROP_VOCAB} words: EnvDrop's train_vocab.txt (991 words + <BOS>; "
                               f"{task.vocab} is not here)"), False
    return ENVDROP_VOCAB, (f"{ENVDROP_VOCAB} words assumed (the vocabulary is built from the training instructions "
                           "at run time; EnvDrop's train_vocab.txt size)"), True


@dataclass(frozen=True)
class EpisodeShape:
    """The sizes of one training episode the card measures (stated assumptions), and why."""

    tokens: int  # instruction ids (the batch's longest instruction, BOS/EOS included)
    teacher_steps: int  # decisions of the teacher-forced rollout
    sampled_steps: int  # decisions of the sampled (A2C) rollout
    candidates: int  # candidate slots per decision (STOP included)
    path_steps: int  # steps of the path the speaker reads (one per viewpoint)
    why: dict[str, str]  # field -> the assumption's source

    def notes(self, mode: str) -> list[str]:
        """The assumptions a follower ("follower") or speaker ("speaker") card rests on."""
        keys = ("path_steps", "tokens") if mode == "speaker" else ("tokens", "teacher_steps", "sampled_steps",
                                                                    "candidates")
        return [self.why[k] for k in keys]


def episode_shape(task: Any) -> EpisodeShape:
    """The episode sizes of a recipe: R2R's measured on its training split, RxR's at the recipe's caps."""
    cap = task.max_action
    why = {"sampled_steps": (f"sampled rollout: {cap} decisions (max_action): a batch runs until its last episode "
                             "stops, and a sampled batch of 64 often runs to the cap (an upper bound; on R2R train an "
                             "untrained agent's batches took 25 on average, a teacher's 7)")}
    if task.dataset == "r2r":
        teacher, tokens, path = (min(R2R_TEACHER_DECISIONS, cap), min(R2R_BATCH_TOKENS, task.max_input),
                                 min(R2R_PATH_STEPS, cap))
        why.update(
            tokens=(f"instructions of {tokens} ids (a batch is trimmed to its longest instruction: "
                    f"{R2R_BATCH_TOKENS} on average over R2R train batches of 64; cap max_input {task.max_input})"),
            teacher_steps=(f"teacher-forced rollout: {teacher} decisions (R2R's longest shortest paths, 6 moves, "
                           "+ STOP: almost every R2R train batch of 64 has one)"),
            candidates=(f"{R2R_CANDIDATE_SLOTS} candidate slots per decision (the batch's widest viewpoint + "
                        "STOP, on R2R train episodes; 4.5 real candidates on average)"),
            path_steps=(f"paths of {path} steps (one per viewpoint: a batch is padded to its longest R2R path, "
                        "7 viewpoints)"))
        return EpisodeShape(tokens, teacher, cap, R2R_CANDIDATE_SLOTS, path, why)
    tokens = task.max_input
    why.update(
        tokens=f"instructions of {tokens} ids (the cap, max_input: RxR's instructions are long)",
        teacher_steps=(f"teacher-forced rollout: {cap} decisions (the cap: RxR's paths are longer and more "
                       "variable than R2R's, RxR README; the card has no source for their lengths)"),
        candidates=(f"{R2R_CANDIDATE_SLOTS} candidate slots per decision (measured on R2R's episodes over the "
                    "same Matterport3D graphs)"),
        path_steps=f"paths of {cap} steps (the cap: RxR's path lengths are not known to the card)")
    return EpisodeShape(tokens, cap, cap, R2R_CANDIDATE_SLOTS, cap, why)


# --------------------------------------------------------------------------------------- the episodes


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _instruction(batch: int, length: int, vocab: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(3, vocab, (batch, length), device=device)  # [B, T] no padding: every id real
    return tokens, torch.ones(batch, length, dtype=torch.bool, device=device)  # [B, T], [B, T]


def _observation(follower: Follower, batch: int, shape: EpisodeShape, env_drop: torch.Tensor | None
                 ) -> tuple[torch.Tensor, ...]:
    """Random inputs of one decision at the env's shapes (clipvil.families.vln.rollout._inputs)."""
    width, dev = follower.feature_dim + follower.cfg.angle_dim, _device(follower)
    action = torch.randn(batch, follower.cfg.angle_dim, device=dev)  # [B, A] angle feature of the heading
    panorama = torch.randn(batch, N_VIEWS, width, device=dev)  # [B, 36, F]
    candidates = torch.randn(batch, shape.candidates, width, device=dev)  # [B, K, F]
    if env_drop is not None:
        panorama = apply_env_drop(panorama, env_drop, follower.cfg.angle_dim)  # [B, 36, F]
        candidates = apply_env_drop(candidates, env_drop, follower.cfg.angle_dim)  # [B, K, F]
    return action, panorama, candidates, torch.ones(batch, shape.candidates, dtype=torch.bool, device=dev)


def _rollout(follower: Follower, tokens: torch.Tensor, mask: torch.Tensor, steps: int, mode: str,
             shape: EpisodeShape, env_drop: torch.Tensor | None, config: RolloutConfig
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(IL loss, A2C loss or None) of one rollout of `steps` decisions, every episode live throughout."""
    batch = tokens.shape[0]
    ctx, state = follower.encode(tokens, mask)  # [B, T, H]
    tape, il_sum = RolloutTape(), ctx.new_zeros(())
    dropped = env_drop is not None
    for _ in range(steps):
        logits, state, h = follower.step(state, *_observation(follower, batch, shape, env_drop), ctx, mask,
                                         already_dropped=dropped)  # [B, K], state, [B, H]
        tape.hidden.append(h)
        target = torch.randint(0, shape.candidates, (batch,), device=ctx.device)  # [B] the teacher's action
        il_sum = il_sum + F.cross_entropy(logits, target, reduction="sum")
        choose_action(mode, logits, target, tape, None)
        tape.rewards.append(np.sign(np.random.standard_normal(batch)).astype(np.float32))  # [B] +-1 per move
        tape.masks.append(np.ones(batch, dtype=np.float32))  # [B] live
    if mode == "teacher":
        return il_sum / batch, None
    _, _, h = follower.step(state, *_observation(follower, batch, shape, env_drop), ctx, mask,
                            already_dropped=dropped)  # the bootstrap step of episodes that never stopped
    last_value = follower.value(h).detach()  # [B]
    rl_loss, _ = a2c_loss(follower, tape, last_value, config, sampled=mode == "sample")
    return il_sum / batch, rl_loss


def follower_loss(follower: Follower, batch: int, shape: EpisodeShape, vocab: int, config: RolloutConfig,
                  feedback: str, tokens: torch.Tensor | None = None, env_drop: torch.Tensor | None = None
                  ) -> torch.Tensor:
    """The task's follower loss (`VLNTask._follower_loss`) over one random batch of episodes."""
    if tokens is None:
        tokens, mask = _instruction(batch, shape.tokens, vocab, _device(follower))
    else:
        mask = torch.ones_like(tokens, dtype=torch.bool)  # [B, T]
    if feedback == "teacher":
        il, _ = _rollout(follower, tokens, mask, shape.teacher_steps, "teacher", shape, env_drop, config)
        return config.teacher_weight * il
    loss = tokens.new_zeros((), dtype=torch.float32)
    if config.ml_weight != 0:
        il, _ = _rollout(follower, tokens, mask, shape.teacher_steps, "teacher", shape, env_drop, config)
        loss = loss + config.ml_weight * il
    _, rl = _rollout(follower, tokens, mask, shape.sampled_steps, "sample", shape, env_drop, config)
    assert rl is not None
    return loss + rl


def _path_context(speaker: Speaker, feature_dim: int, batch: int, steps: int, env_drop: torch.Tensor | None
                  ) -> SpeakerContext:
    width, angle_dim, dev = feature_dim + speaker.cfg.angle_dim, speaker.cfg.angle_dim, _device(speaker)
    actions = torch.randn(batch, steps, width, device=dev)  # [B, L, F] the candidate taken at each step
    panoramas = torch.randn(batch, steps, N_VIEWS, width, device=dev)  # [B, L, 36, F]
    mask = torch.ones(batch, steps, dtype=torch.bool, device=dev)  # [B, L]
    if env_drop is None:
        return SpeakerContext(actions, panoramas, mask)
    return SpeakerContext(apply_env_drop(actions, env_drop, angle_dim), apply_env_drop(panoramas, env_drop, angle_dim),
                          mask, already_dropped=True)


def speaker_loss(speaker: Speaker, batch: int, shape: EpisodeShape, vocab: int, feature_dim: int) -> torch.Tensor:
    """Teacher-forced cross-entropy of the instruction given the path (`vln_eval.speaker_loss`)."""
    context = _path_context(speaker, feature_dim, batch, shape.path_steps, None)
    tokens, _ = _instruction(batch, shape.tokens, vocab, _device(speaker))  # [B, T] BOS first
    logits = speaker(context, tokens)  # [B, T, V]
    pred, target = logits[:, :-1], tokens[:, 1:]  # [B, T-1, V], [B, T-1]
    return F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1), ignore_index=0)


def speak(speaker: Speaker, batch: int, shape: EpisodeShape, feature_dim: int, env_drop: torch.Tensor,
          bos: int = 3) -> torch.Tensor:
    """The frozen speaker's greedy instructions [B, tokens] (BOS first) for random paths, forward only: the
    init_state / step chain of clipvil.nn.decoding.greedy_decode, run to shape.tokens - 1 words."""
    context = _path_context(speaker, feature_dim, batch, shape.path_steps, env_drop)
    with torch.no_grad():
        state = speaker.init_state(context, 1)
        word = torch.full((batch,), bos, dtype=torch.long, device=_device(speaker))  # [B]
        words = [word]
        for _ in range(shape.tokens - 1):
            logp, state = speaker.step(word, state)  # [B, V]
            word = logp.argmax(dim=-1)  # [B]
            words.append(word)
    return torch.stack(words, dim=1)  # [B, T]


# --------------------------------------------------------------------------------------- the describer


def _rollout_config(task: Any) -> RolloutConfig:
    return RolloutConfig(ml_weight=task.ml_weight, teacher_weight=task.teacher_weight, gamma=task.gamma,
                         entropy_weight=task.entropy_weight, normalize=task.normalize)


def _frozen_speaker(task: Any, vocab: int, dim: int) -> Speaker:
    """The back-translation speaker: the recipe's preset with the follower's widths that a speaker has."""
    shared = {f.name for f in dataclasses.fields(SpeakerConfig)}
    overrides = {k: v for k, v in task.model_overrides.items() if k in shared}
    with torch.device("meta"):
        speaker = build_model("envdrop_speaker", task.model_preset, overrides, vocab_size=vocab, feature_dim=dim)
    speaker = materialise(speaker)
    speaker.requires_grad_(False)
    return speaker.eval()


def _follower_phases(cfg: RunConfig, follower: Follower, shape: EpisodeShape, vocab: int, dim: int,
                     notes: list[str]) -> tuple[list[CardPhase], int]:
    """(phases, frozen parameters) of a follower recipe, with or without back-translation."""
    t = cfg.task
    config = _rollout_config(t)
    what = (f"IL ({t.ml_weight} x a teacher-forced rollout of {shape.teacher_steps} decisions) + A2C (a sampled "
            f"rollout of {shape.sampled_steps} decisions, the critic on each, the bootstrap value)"
            if t.feedback == "sample" else
            f"IL only (feedback teacher: {t.teacher_weight} x a teacher-forced rollout of {shape.teacher_steps})")
    stand_in = "; random tensors stand in for the NavEnv observations at its shapes (no simulator, no features)"

    def real(batch: int) -> torch.Tensor:
        return follower_loss(follower, batch, shape, vocab, config, t.feedback)

    if t.aug_file is None:
        return [CardPhase("il+a2c" if t.feedback == "sample" else "il", real, 1.0, f"one episode: {what}{stand_in}")], 0
    speaker = _frozen_speaker(t, vocab, dim)
    aug_config = dataclasses.replace(config, ml_weight=t.aug_ml_weight)

    def augmented(batch: int) -> torch.Tensor:
        speaker.to(_device(follower))  # make_card may have moved the follower (the measuring device)
        mask = follower.env_drop_mask(batch, shared=t.env_drop_shared, device=_device(follower))  # [B, D]
        tokens = speak(speaker, batch, shape, dim, mask)  # [B, T]
        return follower_loss(follower, batch, shape, vocab, aug_config, t.feedback, tokens, mask)

    notes.append(f"back-translation: every update is {cfg.train.batch_size // 2} real + {cfg.train.batch_size // 2} "
                 f"augmented episodes (grad_accum {cfg.train.grad_accum}); the phases' shares (0.5 each) are shares "
                 "of the samples of every update; the frozen speaker (its weights from the speaker run) is built "
                 "with the recipe's preset and the follower's widths")
    return [CardPhase("real", real, 0.5, f"one real episode: {what}{stand_in}"),
            CardPhase("augmented", augmented, 0.5,
                      f"one augmented path: the frozen speaker greedily writes {shape.tokens - 1} words (forward "
                      f"only; a trained speaker stops at EOS), then the follower under one environmental-dropout "
                      f"mask: IL ({t.aug_ml_weight} x) + A2C as above{stand_in}")], sum(
        p.numel() for p in speaker.parameters())


def _datasets(cfg: RunConfig) -> tuple[dict[str, Any], int | None]:
    t = cfg.task
    if t.dataset == "rxr":
        lang = f" ({t.language})" if t.language else ""
        out: dict[str, Any] = {"source": RXR_SOURCE}
        for split in [cfg.train.train_split, *cfg.train.eval_splits]:
            out[split] = {"instructions": None, "note": f"RxR {split}{lang}: size not known to the card"}
        return out, None
    out = {"source": R2R_SOURCE}
    for split, (instructions, paths) in R2R_SIZES.items():
        out[split] = {"instructions": instructions, "paths": paths}
    parts = cfg.train.train_split.split("+")  # "train+val_seen" joins splits
    train_n = sum(R2R_SIZES[p][0] for p in parts) if all(p in R2R_SIZES for p in parts) else None
    if t.aug_file is not None:
        out["augmented"] = {"file": str(t.aug_file), "paths": None, "note": "size not known to the card (EnvDrop's "
                            "aug_paths.json: sampled shortest paths of the training scans)"}
    return out, train_n


def describe_vln(cfg: RunConfig, opts: CardOptions) -> CardParts:
    """The card parts of a VLN recipe (see the module docstring)."""
    t = cfg.task
    dim, how = view_dim(t.feature_encoder)
    vocab, vocab_how, vocab_assumed = vocabulary(t)
    shape = episode_shape(t)
    notes = [f"view features: {how}", f"instruction vocabulary: {vocab_how}", *shape.notes(t.mode)]
    kind = "envdrop_speaker" if t.mode == "speaker" else "envdrop_follower"
    with torch.device("meta"):
        model: nn.Module = build_model(kind, t.model_preset, t.model_overrides, vocab_size=vocab, feature_dim=dim)
    model = materialise(model)
    if t.mode == "speaker":
        phases = [CardPhase("xe", lambda b: speaker_loss(model, b, shape, vocab, dim), 1.0,  # type: ignore[arg-type]
                            f"one path: the path encoder over {shape.path_steps} viewpoints x {N_VIEWS} views, the "
                            f"decoder teacher-forced over {shape.tokens} ids (cross-entropy); random features")]
        frozen = 0
    else:
        phases, frozen = _follower_phases(cfg, model, shape, vocab, dim, notes)  # type: ignore[arg-type]
    datasets, train_n = _datasets(cfg)
    if t.aug_file is not None:
        notes.append("an epoch is the real instructions' (the augmented paths run through their own epochs)")
    angle = model.cfg.angle_dim  # type: ignore[union-attr]
    looked_up = shape.path_steps if t.mode == "speaker" else shape.teacher_steps + shape.sampled_steps
    notes.append(f"input: {looked_up} viewpoints x {N_VIEWS} views x {dim} float32 channels looked up per episode "
                 "(the store is preloaded in memory when it fits)")
    notes.append("only the agent is counted: the views' visual tower ran once, offline (cached features)")
    facts = {"model": f"{kind}/{t.model_preset}", "encoder": t.feature_encoder, "view_dim": dim,
             "view_width": dim + angle, "views": N_VIEWS, "vocab": vocab, "mode": t.mode, "dataset": t.dataset,
             "instruction_tokens": shape.tokens, "candidate_slots": shape.candidates,
             "decisions": {"teacher": shape.teacher_steps, "sampled": shape.sampled_steps}
             if t.mode == "follower" else {"path_steps": shape.path_steps},
             "loss": (f"{t.ml_weight} x IL + A2C" if t.feedback == "sample" else "IL") if t.mode == "follower"
             else "cross-entropy", "input": f"{N_VIEWS} x {dim}-d view features (+ {angle}-d angle feature)"}
    if t.language:
        facts["language"] = t.language
    return CardParts(
        model=model, phases=phases, facts=facts, datasets=datasets, train_samples=train_n,
        input_bytes=looked_up * N_VIEWS * dim * 4, notes=notes,
        embedding_params=embedding_params(model, vocab) if vocab_assumed else 0, frozen_params=frozen)


register_card("vln", describe_vln)

__all__ = ["ENVDROP_VOCAB", "R2R_SIZES", "RELEASED_VIEWS", "EpisodeShape", "describe_vln", "episode_shape",
           "follower_loss", "speak", "speaker_loss", "view_dim", "vocabulary"]
