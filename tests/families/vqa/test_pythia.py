"""Pythia against the sizes of MMF's pythia config and against its attention formula."""

from __future__ import annotations

import pytest
import torch

from clipvil.families.vqa import Pythia, PythiaConfig
from clipvil.families.vqa.pythia import ReLUProjection, TopDownAttention
from clipvil.types import GridFeatures


def _linear(i: int, o: int) -> int:
    return i * o + o


def _wn_linear(i: int, o: int) -> int:
    return _linear(i, o) + 1  # weight_norm(dim=None): direction v plus one scalar g


def _mmf_pythia_param_count(grid_dim: int, vocab: int, answers: int) -> int:
    """Parameters of MMF's pythia (mmf/configs/models/pythia/defaults.yaml with CLIP-ViL's identity image
    encoder): LSTM 1024, question attention 512 → 2 glimpses, joint 5000, logit classifier 300 / 5000."""
    q = 2 * 1024
    embedding = vocab * 300
    lstm = 4 * 1024 * (300 + 1024) + 2 * 4 * 1024
    question_att = _linear(1024, 512) + _linear(512, 2)
    image_att = _wn_linear(grid_dim, 5000) + _wn_linear(q, 5000) + _wn_linear(5000, 1)
    combine = _wn_linear(grid_dim, 5000) + _wn_linear(q, 5000)
    classifier = (
        _wn_linear(5000, 300) + _wn_linear(5000, 5000) + _linear(300, answers) + _linear(5000, answers)
    )
    return embedding + lstm + question_att + image_att + combine + classifier


@pytest.mark.parametrize("grid_dim", [2048, 768])
def test_parameter_count_matches_mmf_pythia(grid_dim: int) -> None:
    with torch.device("meta"):
        model = Pythia(PythiaConfig.preset("pythia"), grid_dim=grid_dim, vocab_size=1000, n_answers=3129)
    assert sum(p.numel() for p in model.parameters()) == _mmf_pythia_param_count(grid_dim, 1000, 3129)


def test_presets_and_bad_config() -> None:
    assert PythiaConfig.preset("pythia") == PythiaConfig()
    assert PythiaConfig.preset("butd").nonlinearity == "gated_tanh"
    with pytest.raises(ValueError, match="unknown Pythia preset 'mmf'"):
        PythiaConfig.preset("mmf")
    with pytest.raises(ValueError, match="unknown nonlinearity 'gelu'"):
        PythiaConfig(nonlinearity="gelu")  # type: ignore[arg-type]


def test_weight_normed_projection_has_norm_g() -> None:
    proj = ReLUProjection(6, 4)
    with torch.no_grad():
        proj.linear.parametrizations.weight.original0.fill_(2.5)
    assert proj.linear.weight.norm().item() == pytest.approx(2.5, rel=1e-6)


def test_top_down_attention_is_a_masked_softmax_of_the_formula() -> None:
    cfg = PythiaConfig(hidden=10)
    att = TopDownAttention(image_dim=6, question_dim=4, cfg=cfg).eval()
    v, q = torch.randn(2, 5, 6), torch.randn(2, 4)  # [B, N, C], [B, Q]
    mask = torch.tensor([[True, False, True, True, False], [True] * 5])  # [B, N]
    c = att.combine
    joint = (
        torch.relu(c.image_proj.linear(v)) * torch.relu(c.question_proj.linear(q))[:, None]
    )  # [B, N, hidden]
    scores = att.score(joint).squeeze(-1).masked_fill(~mask, -torch.inf)  # [B, N]
    expected = (scores.softmax(1)[..., None] * v).sum(1)  # [B, C]
    torch.testing.assert_close(att(v, mask, q), expected)


def test_single_real_cell_is_attended_fully() -> None:
    model = Pythia(
        PythiaConfig(hidden=16, question_hidden=8, classifier_image_hidden=16),
        grid_dim=5,
        vocab_size=9,
        n_answers=4,
    ).eval()
    feats = torch.randn(1, 6, 5)  # [1, N, C]
    mask = torch.zeros(1, 6, dtype=torch.bool)
    mask[0, 3] = True
    q = model.question_att(*model.question(torch.tensor([[1, 2, 0]])))  # [1, Q]
    attended = model.image_att(feats * mask[..., None], mask, q)  # [1, C]
    torch.testing.assert_close(attended, feats[:, 3])
    alone = GridFeatures(feats[:, 3:4], torch.ones(1, 1, dtype=torch.bool), (1, 1))
    torch.testing.assert_close(
        model(GridFeatures(feats, mask, (2, 3)), torch.tensor([[1, 2, 0]])),
        model(alone, torch.tensor([[1, 2]])),
    )


def test_mmf_exact_question_attention_weighs_padding_of_fixed_length_questions() -> None:
    """attend_padding=True: questions padded to 14 tokens, one softmax over all 14 positions (MMF's
    AttentionTextEmbedding has no mask); the masked default gives other logits on a padded question."""
    from dataclasses import replace

    from clipvil.nn.layers import masked_softmax
    from clipvil.types import GridFeatures

    torch.manual_seed(0)
    cfg = PythiaConfig(word_dim=8, question_hidden=12, question_att_hidden=6, hidden=10,
                       classifier_text_hidden=5, classifier_image_hidden=7)
    mmf = Pythia(replace(cfg, attend_padding=True), grid_dim=6, vocab_size=20, n_answers=4).eval()
    masked = Pythia(cfg, grid_dim=6, vocab_size=20, n_answers=4).eval()
    masked.load_state_dict(mmf.state_dict())
    grid = GridFeatures(torch.randn(2, 4, 6), torch.ones(2, 4, dtype=torch.bool), (2, 2))
    tokens = torch.tensor([[3, 5, 7, 0], [4, 0, 0, 0]])  # [B, T]: padded to the batch's longest
    with torch.no_grad():
        out = mmf(grid, tokens)
        # by hand: pad to 14, LSTM over all 14 positions, softmax over all of them (no mask)
        full = torch.nn.functional.pad(tokens, (0, 10))  # [B, 14]
        states, _ = mmf.question(full)  # [B, 14, H]
        att = mmf.question_att
        scores = att.score(torch.relu(att.fc(states)))  # [B, 14, G]
        weights = torch.softmax(scores, dim=1)  # [B, 14, G]
        q = torch.einsum("blg,bld->bgd", weights, states).flatten(1)  # [B, G * H]
        v = mmf.image_att(grid.feats, grid.mask, q)  # [B, C]
        by_hand = mmf.classifier(mmf.fusion(v, q))  # [B, A]
        assert torch.allclose(out, by_hand, atol=1e-6)
        assert torch.allclose(mmf(grid, torch.nn.functional.pad(tokens, (0, 5))), out, atol=1e-6)  # batch padding
        assert not torch.allclose(masked(grid, tokens), out, atol=1e-4)  # masking changes padded questions
        assert masked_softmax is not None
