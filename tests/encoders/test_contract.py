"""One contract test over every registered kind of tower: forward, grid = input / stride, mask, no NaN."""

from __future__ import annotations

import pytest
import torch

from clipvil.encoders import build_encoder, list_encoders

PAPER_TOWERS = ["RN50", "RN101", "RN50x4", "RN50x16", "ViT-B-32", "ViT-B-16", "ViT-L-14", "imagenet-rn50"]
OTHER_OPEN_CLIP = ["ViT-S-32", "convnext_tiny"]  # any other open_clip tower (ViT and timm-trunk families)


@pytest.mark.parametrize("name", PAPER_TOWERS + OTHER_OPEN_CLIP)
def test_encoder_contract(name: str) -> None:
    enc = build_encoder(name)
    assert name in list_encoders()
    h, w = 2 * enc.stride, 3 * enc.stride  # a non-square input, 2 x 3 cells
    x = torch.randn(2, 3, h, w)
    with torch.inference_mode():
        grid = enc(x, pooled=enc.embed_dim is not None)
    assert grid.hw == (2, 3)
    assert grid.feats.shape == (2, 6, enc.dim)
    assert grid.mask.dtype == torch.bool and bool(grid.mask.all())
    assert torch.isfinite(grid.feats).all()
    if enc.embed_dim is not None:
        assert grid.pooled is not None and grid.pooled.shape == (2, enc.embed_dim)
        assert torch.isfinite(grid.pooled).all()
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())


def test_paper_grid_sizes() -> None:
    """600x1000 gives 18x31 at stride 32 (VQA); 448x448 gives 14x14 (captioning)."""
    enc = build_encoder("ViT-B-32")
    with torch.inference_mode():
        assert enc(torch.randn(1, 3, 600, 1000)).hw == (18, 31)
        assert enc(torch.randn(1, 3, 448, 448)).hw == (14, 14)


def test_trainable_tower_has_grads_and_train_mode() -> None:
    enc = build_encoder("RN50", trainable=True)
    assert enc.training
    grid = enc(torch.randn(2, 3, 64, 64))
    grid.feats.sum().backward()
    assert enc.visual.conv1.weight.grad is not None


def test_unknown_name_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown encoder 'RN51'"):
        build_encoder("RN51")


def test_openai_spelling_is_accepted() -> None:
    assert build_encoder("ViT-B/32").name == "ViT-B-32"
