"""Relevance maps (pytorch-grad-cam over clipvil towers), the overlay PNG and the index page."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipvil.apps.explain import cosine_score, crop_to_content, overlay, relevance_map, write_index_html
from clipvil.encoders import build_encoder
from clipvil.types import GridFeatures

SIZE = 128  # 4 x 4 grid at stride 32


@pytest.fixture(scope="module")
def towers() -> dict[str, torch.nn.Module]:
    """Random-weight towers (seeded by build_encoder): CLIP ResNet, CLIP ViT, timm ResNet."""
    logging.getLogger("clipvil").setLevel(logging.ERROR)  # "RANDOM weights" warnings
    torch.set_num_threads(1)
    return {name: build_encoder(name) for name in ("RN50", "ViT-B-32", "imagenet-rn50")}


def _pixels(seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _cell_sum(k: int):
    return lambda grid: grid.feats[0, k].sum()


def _cell_energy(k: int):
    # ViT grids come out of a LayerNorm: their sum is the (zero) bias, their squared norm is not constant
    # enough to vanish, and it is positive — a score that only cell k carries
    return lambda grid: grid.feats[0, k].pow(2).sum()


@pytest.mark.parametrize("name", ["RN50", "ViT-B-32", "imagenet-rn50"])
def test_hirescam_peaks_at_the_scored_cell(towers: dict, name: str) -> None:
    tower = towers[name]
    for k in (0, 6, 13):
        score = _cell_energy(k) if name.startswith("ViT") else _cell_sum(k)
        heat = relevance_map(tower, _pixels(), None, score, method="hirescam")
        assert heat.shape == (4, 4) and heat.dtype == np.float32
        assert heat.min() >= 0.0 and heat.max() == pytest.approx(1.0)
        assert int(np.argmax(heat)) == k, (name, k, heat)


def test_vit_gradcam_peaks_at_the_scored_cell(towers: dict) -> None:
    for k in (3, 9):
        heat = relevance_map(towers["ViT-B-32"], _pixels(), None, _cell_energy(k))
        assert int(np.argmax(heat)) == k


def test_resnet_gradcam_is_gradcam_on_layer4(towers: dict) -> None:
    """Against Grad-CAM written out here: weights = spatial mean of dS/dA, map = ReLU(sum_c w_c A_c) on layer4
    (the RN tower's grid), min-max scaled as pytorch-grad-cam does."""
    tower = towers["RN50"]
    u = torch.rand(tower.dim, generator=torch.Generator().manual_seed(7)) - 0.25  # mixed signs

    def score(grid: GridFeatures) -> torch.Tensor:
        return grid.feats[0, 5] @ u + grid.feats[0, 10].mean()

    pixels = _pixels(2).requires_grad_(True)
    grid = tower(pixels, pooled=True)
    grads = torch.autograd.grad(score(grid), grid.feats)[0][0]  # [N, C]
    cam = torch.relu(grid.feats[0].detach() @ grads.mean(0)).reshape(4, 4).numpy()  # [h, w]
    cam = cam - cam.min()
    expected = cam / cam.max()
    assert len(np.unique(expected)) > 8  # a map with structure, not a constant
    got = relevance_map(tower, _pixels(2), None, score)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_padded_cells_are_zero(towers: dict) -> None:
    content = (64, 96)  # 2 rows x 3 columns of real cells
    pixels = _pixels()
    pixels[:, :, 64:, :] = 0
    pixels[:, :, :, 96:] = 0
    for name in ("RN50", "ViT-B-32"):
        score = _cell_energy(4 + 1) if name.startswith("ViT") else _cell_sum(5)
        heat = relevance_map(towers[name], pixels, content, score, method="hirescam")
        assert (heat[2:, :] == 0).all() and (heat[:, 3:] == 0).all()
        assert int(np.argmax(heat)) == 5
        assert crop_to_content(heat, content, 32).shape == (2, 3)


def test_image_text_cosine_reaches_the_grid(towers: dict) -> None:
    """The pooled embedding's path reaches the target layer (a ViT map made at the last block's output would
    get no gradient from the CLS embedding). Grad-CAM keeps positive evidence only, and a random text may have
    none, so the text and its opposite are both tried: one of them must light up some cell."""
    for name in ("RN50", "ViT-B-32"):
        tower = towers[name]
        text = torch.randn(tower.embed_dim, generator=torch.Generator().manual_seed(3))
        maps = [relevance_map(tower, _pixels(), None, cosine_score(t)) for t in (text, -text)]
        assert all(np.isfinite(m).all() and m.min() >= 0 for m in maps)
        assert max(m.max() for m in maps) == pytest.approx(1.0)
        assert not tower.training


def test_bad_inputs(towers: dict) -> None:
    with pytest.raises(ValueError, match=r"pixels must be \[1, 3, H, W\]"):
        relevance_map(towers["RN50"], torch.zeros(2, 3, SIZE, SIZE), None, _cell_sum(0))
    with pytest.raises(ValueError, match="unknown method"):
        relevance_map(towers["RN50"], _pixels(), None, _cell_sum(0), method="lime")
    with pytest.raises(ValueError, match="scalar"):
        relevance_map(towers["RN50"], _pixels(), None, lambda g: g.feats[0, 0])
    with pytest.raises(TypeError, match="no target layer"):
        relevance_map(torch.nn.Linear(2, 2), _pixels(), None, _cell_sum(0))  # type: ignore[arg-type]


def test_overlay_png_and_index(tmp_path: Path) -> None:
    image = Image.new("RGB", (160, 120), (40, 90, 200))
    heat = np.zeros((3, 4), dtype=np.float32)
    heat[1, 2] = 1.0
    out = overlay(image, heat, "the <blue> square", tmp_path / "maps" / "0001.png", boxes_xywh=[(10, 20, 30, 40)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as png:
        png.verify()
    with Image.open(out) as png:
        assert png.format == "PNG" and min(png.size) > 50
    page = write_index_html(tmp_path / "maps", [("0001.png", "the <blue> square")])
    text = page.read_text(encoding="utf-8")
    assert page.name == "index.html" and '<img src="0001.png"' in text
    assert "the &lt;blue&gt; square" in text and "<blue>" not in text
    with pytest.raises(ValueError, match=r"heat must be \[h, w\]"):
        overlay(image, np.zeros(4), "x", tmp_path / "bad.png")
