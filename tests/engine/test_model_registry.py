"""Contract of the "vqa" family, parametrised over the registry itself: every registered VQA head builds
from the family's constructor arguments at a small size, maps (GridFeatures, tokens) to [B, A] finite
logits, and ignores what lies in padded grid cells and after the question's last token."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from clipvil.engine.models import build_model, get_model, model_config, registered_models
from clipvil.types import GridFeatures

VOCAB, ANSWERS, GRID_DIM = 30, 9, 40

# Small sizes for the heads that have no 'tiny' preset; a new head should give itself one instead.
SMALL_OVERRIDES: dict[str, dict[str, Any]] = {
    "mcan": {"hidden": 32, "ff": 64, "heads": 4, "layers": 2, "word_dim": 16, "flat_mlp": 24, "flat_out": 40},
    "pythia": {
        "word_dim": 16,
        "question_hidden": 32,
        "question_att_hidden": 24,
        "hidden": 48,
        "classifier_text_hidden": 12,
        "classifier_image_hidden": 40,
    },
}


def _small_config(name: str) -> Any:
    cls = get_model(name).config_cls
    if hasattr(cls, "preset"):
        try:
            return cls.preset("tiny")
        except ValueError:
            pass
    if name not in SMALL_OVERRIDES:
        pytest.fail(f"vqa model {name!r} has no 'tiny' preset and no entry in SMALL_OVERRIDES")
    return model_config(name, overrides=SMALL_OVERRIDES[name])


def _build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = _small_config(name)
    entry = get_model(name)
    model = entry.builder(cfg, grid_dim=GRID_DIM, vocab_size=VOCAB, n_answers=ANSWERS)
    return model.eval()


def _inputs() -> tuple[GridFeatures, torch.Tensor]:
    """Batch of 3 on a 4 x 5 grid: image 0 fills it, image 1 has 3 x 4 real cells, image 2 has 2 x 5."""
    torch.manual_seed(1)
    mask = torch.zeros(3, 4, 5, dtype=torch.bool)
    mask[0], mask[1, :3, :4], mask[2, :2] = True, True, True
    grid = GridFeatures(torch.randn(3, 20, GRID_DIM), mask.flatten(1), (4, 5))  # [B, N, C]
    tokens = torch.randint(1, VOCAB, (3, 6))  # [B, T]
    tokens[1, 3:], tokens[2, 1:] = 0, 0
    return grid, tokens


VQA_MODELS = registered_models("vqa")


def test_the_known_vqa_heads_are_registered() -> None:
    assert {"mcan", "pythia", "movie_mcan"} <= set(VQA_MODELS)


@pytest.mark.parametrize("name", VQA_MODELS)
def test_logits_shape_and_finite(name: str) -> None:
    grid, tokens = _inputs()
    logits = _build(name)(grid, tokens)  # [B, A]
    assert logits.shape == (3, ANSWERS)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", VQA_MODELS)
@pytest.mark.parametrize("fill", [1e30, float("nan")])
def test_padded_cells_do_not_change_the_logits(name: str, fill: float) -> None:
    model = _build(name)
    grid, tokens = _inputs()
    ref = model(grid, tokens)  # [B, A]
    filled = GridFeatures(grid.feats.masked_fill(~grid.mask.unsqueeze(-1), fill), grid.mask, grid.hw)
    torch.testing.assert_close(model(filled, tokens), ref, atol=1e-5, rtol=1e-5)
    # image 1 alone on a grid of its real 3 x 4 cells: the same row
    alone = grid.as_map()[1:2, :, :3, :4].flatten(2).transpose(1, 2)  # [1, 12, C]
    one = GridFeatures(alone, torch.ones(1, 12, dtype=torch.bool), (3, 4))
    torch.testing.assert_close(model(one, tokens[1:2, :3])[0], ref[1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", VQA_MODELS)
def test_question_padding_does_not_change_the_logits(name: str) -> None:
    model = _build(name)
    grid, tokens = _inputs()
    longer = torch.cat([tokens, torch.zeros(3, 4, dtype=torch.long)], dim=1)  # [B, 10]
    torch.testing.assert_close(model(grid, longer), model(grid, tokens), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", VQA_MODELS)
def test_build_model_by_name_matches_the_builder(name: str) -> None:
    cfg = _small_config(name)
    torch.manual_seed(3)
    direct = get_model(name).builder(cfg, grid_dim=GRID_DIM, vocab_size=VOCAB, n_answers=ANSWERS)
    overrides = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    torch.manual_seed(3)
    by_name = build_model(name, overrides=overrides, grid_dim=GRID_DIM, vocab_size=VOCAB, n_answers=ANSWERS)
    assert by_name.state_dict().keys() == direct.state_dict().keys()
    for key, value in direct.state_dict().items():
        assert torch.equal(by_name.state_dict()[key], value), key


@pytest.mark.parametrize("name", registered_models())
def test_every_models_own_default_settings_pass_the_type_check(name: str) -> None:
    defaults = get_model(name).config_cls()
    values = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults)}
    assert model_config(name, "", values) == defaults


@pytest.mark.parametrize(("overrides", "message"), [
    ({"hidden": "abc"}, "hidden must be an integer, got 'abc'"),
    ({"hidden": 1.5}, "hidden must be an integer, got 1.5"),
    ({"hidden": True}, "hidden must be an integer, got True"),
    ({"dropout": "x"}, "dropout must be a number, got 'x'"),
])
def test_model_overrides_of_the_wrong_type_are_named(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"model 'mcan': {message}"):
        model_config("mcan", "small", overrides)
    assert model_config("mcan", "small", {"dropout": 0}).dropout == 0  # an integer is a number
