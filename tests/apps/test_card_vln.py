"""Cards of the VLN recipes: the describer's model, phases and facts against hand counts, and its R2R
assumptions re-derived from the real R2R files and connectivity graphs in /work/shared/data."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from clipvil.apps import card_vln
from clipvil.apps.card_measure import measure_step, step_flops_and_activations
from clipvil.apps.card_parts import CardOptions, CardParts, describer
from clipvil.engine.config import RunConfig, load_config

REPO = Path(__file__).resolve().parents[2]
DATA = Path("/work/shared/data")
TINY = ["task.model_preset=tiny", "task.model_overrides.angle_dim=8"]  # word 16, hidden 32, action 8


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # the recipes' vocabulary path is relative to the repository


def _parts(recipe: str, extra: list[str] | None = None) -> tuple[RunConfig, CardParts]:
    cfg = load_config(REPO / "configs/vln" / recipe, [*TINY, *(extra or [])])
    torch.manual_seed(0)
    return cfg, describer("vln")(cfg, CardOptions())


def _lstm(inp: int, hidden: int, dirs: int) -> int:
    return dirs * (4 * hidden * (inp + hidden) + 8 * hidden)  # weights + two biases per direction


def _soft_dot(query: int, ctx: int) -> int:
    return query * ctx + (query + ctx) * query  # linear_in, linear_out (no biases)


def _follower_params(vocab: int, view: int, w: int = 16, h: int = 32, a: int = 8, angle: int = 8) -> int:
    f = view + angle
    return (vocab * w + _lstm(w, h // 2, 2) + h * h + h  # instruction encoder
            + angle * a + a + 4 * h * (a + f) + 4 * h * h + 8 * h  # heading embedding, LSTMCell
            + _soft_dot(h, f) + _soft_dot(h, h) + _soft_dot(h, f)  # panorama, instruction, candidates
            + h * h + h + h + 1)  # critic


def _speaker_params(vocab: int, view: int, w: int = 16, h: int = 32, angle: int = 8) -> int:
    f = view + angle
    return (_lstm(f, h // 2, 2) + _soft_dot(h, f) + _lstm(h, h // 2, 2)  # path encoder
            + vocab * w + _lstm(w, h, 1) + _soft_dot(h, h) + h * vocab + vocab  # decoder
            + h * 128 + 128 + 128 + 1)  # baseline_projection (kept for checkpoints)


def test_view_feature_widths() -> None:
    """The released files' widths (CLIP's pooled embeddings; ResNet-152's pool5) and a registry tower's."""
    widths = {name: card_vln.view_dim(name)[0] for name in card_vln.RELEASED_VIEWS}
    assert widths == {"CLIP-ViT-B-32-views": 512, "CLIP-ResNet-50-views": 1024, "CLIP-ResNet-101-views": 512,
                      "CLIP-ResNet-50x4-views": 640, "ResNet-152-imagenet": 2048}
    assert card_vln.view_dim("RN50x4")[0] == 640
    with pytest.raises(ValueError, match="is neither a released view file"):
        card_vln.view_dim("CLIP-ResNet-9000-views")
    with pytest.raises(ValueError, match="sets no task.feature_encoder"):
        card_vln.view_dim("")


def test_lstm_flops_are_counted() -> None:
    """nn.LSTM on the CPU runs a fused kernel torch's counter does not know; with the formulas its forward is
    2 x rows x 4H (I + H) per direction, and a backward with input gradients twice that."""
    lstm = torch.nn.LSTM(16, 32, batch_first=True, bidirectional=True)
    x = torch.randn(3, 10, 16, requires_grad=True)
    fwd = 2 * 2 * 3 * 10 * 4 * 32 * (16 + 32)
    assert step_flops_and_activations(lstm, lambda b: lstm(x)[0].sum())[0] == 3 * fwd
    packed = pack_padded_sequence(x, torch.tensor([10, 10, 10]), batch_first=True)
    assert step_flops_and_activations(lstm, lambda b: lstm(packed)[0].data.sum())[0] == 3 * fwd


def test_r2r_sizes_and_assumptions_from_the_real_data() -> None:
    tok_file = DATA / "clip-vil/r2r_vocab/train_vocab.txt"
    assert card_vln.ENVDROP_VOCAB == len(tok_file.read_text().splitlines()) + 1  # + <BOS>
    for split, (instructions, paths) in card_vln.R2R_SIZES.items():
        items = json.loads((DATA / f"r2r/R2R_{split}.json").read_text())
        assert (sum(len(it["instructions"]) for it in items), len(items)) == (instructions, paths)
    train = json.loads((DATA / "r2r/R2R_train.json").read_text())
    moves = [len(it["path"]) - 1 for it in train]
    share_longest = moves.count(max(moves)) / len(moves)
    assert max(moves) + 1 == card_vln.R2R_TEACHER_DECISIONS == card_vln.R2R_PATH_STEPS
    assert (1 - share_longest) ** 64 < 0.01  # almost every batch of 64 holds a longest path
    from clipvil.data.nav_text import EnvDropTokenizer

    tok = EnvDropTokenizer.from_file(tok_file, 80)
    lengths = [int(np.count_nonzero(ids)) for it in train for s in it["instructions"]
               if (ids := tok.encode(s)) is not None]
    random.Random(0).shuffle(lengths)
    batch_max = [max(lengths[i:i + 64]) for i in range(0, len(lengths) - 63, 64)]
    assert abs(np.mean(batch_max) - card_vln.R2R_BATCH_TOKENS) < 2


def test_candidate_slots_on_the_real_graphs() -> None:
    """The candidate tensor's width (the batch's widest viewpoint + STOP) along teacher-forced R2R episodes."""
    from clipvil.data.nav import load_nav_graphs, read_r2r
    from clipvil.data.nav_env import IGNORE, STOP, NavEnv

    episodes = read_r2r(DATA / "r2r/R2R_train.json")
    random.Random(0).shuffle(episodes)
    batches = [episodes[i * 64:(i + 1) * 64] for i in range(3)]
    graphs = load_nav_graphs(DATA / "clip-vil/connectivity", sorted({e.scan for b in batches for e in b}))
    env = NavEnv(graphs, {}, max_action=35, angle_dim=4)
    env.view_features = lambda scan, vp: np.zeros((36, 4), np.float32)  # type: ignore[method-assign]
    widths = []
    for batch in batches:
        obs = env.reset(batch)
        while not env.done:
            widths.append(obs.candidates.shape[1])
            obs = env.step(np.where(obs.teacher == IGNORE, STOP, obs.teacher))
    assert round(float(np.mean(widths))) == card_vln.R2R_CANDIDATE_SLOTS


def test_follower_card_by_hand() -> None:
    cfg, parts = _parts("follower_rn50.yaml")
    assert sum(p.numel() for p in parts.model.parameters()) == _follower_params(992, 1024)
    assert parts.facts["view_dim"] == 1024 and parts.facts["vocab"] == 992 and parts.embedding_params == 0
    assert parts.facts["decisions"] == {"teacher": 7, "sampled": cfg.task.max_action} and cfg.task.max_action == 35
    assert parts.train_samples == 14_039 and parts.datasets["val_unseen"]["instructions"] == 2_349
    assert parts.input_bytes == (7 + 35) * 36 * 1024 * 4 and parts.frozen_params == 0
    [phase] = parts.phases
    assert (phase.name, phase.share) == ("il+a2c", 1.0)
    optimizer = torch.optim.RMSprop(parts.model.parameters(), lr=1e-4)
    cost = measure_step(parts.model, phase.loss_fn, optimizer, batch=2, max_updates=1)
    # lower bound: the instruction LSTM (69 ids, 2 x 16 per direction) of both rollouts and the decoder's
    # LSTMCell on each of 7 + 35 decisions, forward + backward (3 x forward), and the bootstrap step forward
    enc = 2 * 2 * 69 * 4 * 16 * (16 + 16)
    cell = 2 * 4 * 32 * (8 + 1024 + 8 + 32)
    assert cost.flops >= 3 * 2 * enc + 3 * (7 + 35) * cell + cell
    assert cost.flops < 3 * (3 * 2 * enc + 3 * (7 + 35) * cell)  # attention and heads cost less than those


def test_teacher_feedback_runs_il_only() -> None:
    _, sample = _parts("follower_rn50.yaml")
    _, teacher = _parts("follower_rn50.yaml", ["task.feedback=teacher"])
    flops = [step_flops_and_activations(p.model, p.phases[0].loss_fn, 1)[0] for p in (sample, teacher)]
    assert teacher.phases[0].name == "il" and flops[1] < flops[0] / 3  # 7 decisions and one encoding of 42 + 2


def test_speaker_card_by_hand() -> None:
    _, parts = _parts("speaker_rn101.yaml")
    assert sum(p.numel() for p in parts.model.parameters()) == _speaker_params(992, 512)
    [phase] = parts.phases
    flops = step_flops_and_activations(parts.model, phase.loss_fn, 1)[0]
    # the decoder's LSTM over 69 ids and its vocabulary projection, forward + backward
    assert flops >= 3 * 69 * (2 * 4 * 32 * (16 + 32) + 2 * 32 * 992)
    assert parts.input_bytes == 7 * 36 * 512 * 4


def test_back_translation_card() -> None:
    cfg, parts = _parts("bt_envdrop_rn50x4.yaml")
    assert [(p.name, p.share) for p in parts.phases] == [("real", 0.5), ("augmented", 0.5)]
    assert parts.frozen_params == _speaker_params(992, 640)  # the frozen speaker that writes instructions
    assert sum(p.numel() for p in parts.model.parameters()) == _follower_params(992, 640)
    assert cfg.train.batch_size == 128 and cfg.train.max_steps == 100_000
    real, aug = (step_flops_and_activations(parts.model, p.loss_fn, 1)[0] for p in parts.phases)
    # the speaker's greedy decoding of 68 words (forward only): its LSTM and vocabulary projection per word
    assert aug - real >= 68 * (2 * 4 * 32 * (16 + 32) + 2 * 32 * 992)
    assert parts.datasets["augmented"]["paths"] is None


def test_rxr_card_states_its_assumptions() -> None:
    cfg, parts = _parts("rxr_hi_imagenet_resnet152.yaml")
    assert cfg.task.tokenizer == "subword" and parts.facts["vocab"] == cfg.task.subword_vocab_size == 8000
    assert parts.embedding_params == 8000 * 16  # the assumed subword vocabulary x word_dim
    assert parts.facts["instruction_tokens"] == cfg.task.max_input == 160
    assert parts.facts["decisions"] == {"teacher": 35, "sampled": 35} and parts.facts["view_dim"] == 2048
    assert parts.train_samples is None and parts.datasets["train"]["instructions"] is None
    assert parts.facts["language"] == "hi" and "0.4 x IL" in parts.facts["loss"]
    assert any("no source for their lengths" in n for n in parts.notes)
