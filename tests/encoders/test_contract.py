"""One contract test over the encoder registry: forward, grid = input / stride, masks with padding, no NaN.

The registry lists ~130 towers, up to ViT-e-14 and ViT-bigG (billions of parameters): building them all does not
fit a CPU test. The test takes, from `list_encoders()` itself, the smallest tower of every family variant the
registry holds — (family, pooling) — so a new family or pooling variant in the registry is covered by itself —
plus the paper's RN50 and ViT-B-32 at their real sizes.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import open_clip
import pytest
import torch
import torch.nn.functional as F

from clipvil.encoders import Tower, WeightsInfo, build_encoder, list_encoders, tower_family
from clipvil.encoders.preprocess import grid_mask
from clipvil.encoders.registry import FAMILIES


def _variant_and_size(name: str) -> tuple[tuple, float]:
    """A tower's (family, pooling) variant and a size proxy (read from its config; nothing is built)."""
    family = tower_family(name)
    cfg = open_clip.get_model_config(name) or {}
    vision = cfg.get("vision_cfg", {})
    if family == "clip-vit":
        grid = (vision["image_size"] if isinstance(vision["image_size"], int) else vision["image_size"][0]) \
            // vision["patch_size"]
        variant = (family, vision.get("pool_type", "tok"), bool(vision.get("attentional_pool")),
                   bool(vision.get("final_ln_after_pool")))
        return variant, vision["width"] ** 2 * vision["layers"] * grid**2
    if family == "clip-resnet":
        return (family,), vision["width"] ** 2 * sum(vision["layers"]) * vision["image_size"] ** 2
    if family == "clip-timm-conv":
        with torch.device("meta"):
            visual = open_clip.model._build_vision_tower(cfg["embed_dim"], vision)
        return (family,), sum(p.numel() for p in visual.parameters())
    return (family,), 0


def representatives() -> list[str]:
    logging.disable(logging.WARNING)  # meta-device builds of timm trunks warn about missing weights
    try:
        best: dict[tuple, tuple[float, str]] = {}
        sizes: dict[tuple, list[tuple[float, str]]] = defaultdict(list)
        for name in list_encoders():
            variant, size = _variant_and_size(name)
            sizes[variant].append((size, name))
        for variant, items in sizes.items():
            best[variant] = min(items)
        return sorted(name for _, name in best.values())
    finally:
        logging.disable(logging.NOTSET)


REPRESENTATIVES = sorted(set(representatives()) | {"RN50", "ViT-B-32"})


def test_representatives_cover_every_family() -> None:
    assert {tower_family(n) for n in REPRESENTATIVES} == set(FAMILIES)
    assert {"convnext_tiny", "imagenet-rn50", "coca_ViT-B-32"} <= set(REPRESENTATIVES)  # smallest of their kind


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_encoder_contract(name: str) -> None:
    enc = build_encoder(name)
    assert isinstance(enc, Tower) and isinstance(enc.weights_info, WeightsInfo) and enc.name == name
    assert enc.weights_info.format == "random"
    s = enc.stride
    x = torch.randn(2, 3, 2 * s, 3 * s)  # a non-square input, 2 x 3 cells
    content = [(2 * s, 3 * s), (s, 2 * s - 3)]  # image 1: 1 x 2 real cells, the rest padding
    attn_pooler = getattr(getattr(enc, "visual", None), "attn_pool", None) is not None
    with_pooled = enc.embed_dim is not None and not attn_pooler
    with torch.inference_mode():
        full = enc(x, pooled=with_pooled)
        padded = enc(x, content_hw=content, pooled=with_pooled)
    assert full.hw == (2, 3) and full.feats.shape == (2, 6, enc.dim)
    assert full.mask.dtype == torch.bool and bool(full.mask.all())
    expected = torch.stack([grid_mask(hw, (2, 3), s) for hw in content])  # [2, 6]
    assert expected[1].tolist() == [True, True, False, False, False, False]
    assert torch.equal(padded.mask, expected)
    assert torch.isfinite(full.feats).all() and torch.isfinite(padded.feats).all()
    if with_pooled:
        assert full.pooled.shape == (2, enc.embed_dim) and torch.isfinite(padded.pooled).all()
        torch.testing.assert_close(padded.pooled[0], full.pooled[0], rtol=1e-4, atol=1e-4)  # nothing padded
        assert (padded.pooled[1] - full.pooled[1]).abs().max() > 1e-4, "the pooled embedding must use the mask"
    elif attn_pooler:
        with pytest.raises(ValueError, match="attentional pooler"), torch.inference_mode():
            enc(x, content_hw=content, pooled=True)
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())


@pytest.mark.parametrize("name", [n for n in REPRESENTATIVES if tower_family(n) == "clip-vit"])
def test_vit_padding_does_not_change_real_cells(name: str) -> None:
    """ViTs hide padded patches from attention: real cells and the pooled embedding ignore padded pixels."""
    enc = build_encoder(name)
    s = enc.stride
    a, b = torch.zeros(1, 3, 2 * s, 4 * s), torch.randn(1, 3, 2 * s, 4 * s) * 5
    a[..., : 2 * s] = b[..., : 2 * s] = torch.randn(1, 3, 2 * s, 2 * s)
    pooled = enc.visual.attn_pool is None
    with torch.inference_mode():
        ga, gb = enc(a, [(2 * s, 2 * s)], pooled=pooled), enc(b, [(2 * s, 2 * s)], pooled=pooled)
    keep = ga.mask[0]
    torch.testing.assert_close(ga.feats[0, keep], gb.feats[0, keep], rtol=1e-4, atol=1e-4)
    if pooled:
        torch.testing.assert_close(ga.pooled, gb.pooled, rtol=1e-4, atol=1e-4)


def test_timm_baseline_pooled_is_the_mean_of_real_cells() -> None:
    enc = build_encoder("imagenet-rn50")
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        g = enc(x, content_hw=[(64, 40)], pooled=True)  # 2 x 2 real cells of 2 x 3
    real = g.feats[0].view(2, 3, -1)[:, :2].reshape(4, -1)  # [4, C]
    torch.testing.assert_close(g.pooled[0], real.mean(0))


def test_convnext_pooled_is_its_head_over_real_cells_of_one_forward() -> None:
    """Before: the pooled embedding ran the whole tower a second time over every cell, padding included."""
    enc = build_encoder("convnext_tiny")
    trunk, calls = enc.visual.trunk, []
    original = trunk.forward_features
    trunk.forward_features = lambda px: calls.append(1) or original(px)  # type: ignore[method-assign]
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        g = enc(x, content_hw=[(64, 40)], pooled=True)
    assert len(calls) == 1, "the pooled embedding must come from the grid's own forward"
    real = g.feats[0].view(2, 3, -1)[:, :2].reshape(4, -1).mean(0)  # [C]: average pool over the real cells
    norm = trunk.head.norm
    normed = F.layer_norm(real, (real.shape[0],), norm.weight, norm.bias, norm.eps)  # [C]
    torch.testing.assert_close(g.pooled[0], normed @ enc.visual.head.proj.weight.T, rtol=1e-4, atol=1e-4)


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


def test_unknown_and_unsupported_names_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown encoder 'RN51'"):
        build_encoder("RN51")
    with pytest.raises(ValueError, match="'ViT-B-16-SigLIP' has no grid-feature support: its timm trunk"):
        build_encoder("ViT-B-16-SigLIP")
    assert "ViT-B-16-SigLIP" not in list_encoders() and "ViT-B-16-SigLIP" in open_clip.list_models()


def test_openai_spelling_is_accepted() -> None:
    assert build_encoder("ViT-B/32").name == "ViT-B-32"
