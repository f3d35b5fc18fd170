"""clipvil's small open_clip configs: registered by name, trainable with open_clip's ClipLoss, exported as
checkpoints that open_clip and build_encoder both load back to the same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pytest
import torch
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer

from clipvil.encoders import build_encoder, list_encoders
from clipvil.encoders.small_clip import (
    MODEL_CONFIG_DIR,
    SMALL_MODELS,
    export_open_clip_checkpoint,
    register_model_configs,
)


def _perturbed(name: str) -> torch.nn.Module:
    """A CLIP `name` whose weights are far from any seeded initialisation."""
    torch.manual_seed(11)
    model = open_clip.create_model(name)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


def _inputs(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    size = model.visual.image_size
    side = size if isinstance(size, int) else size[0]
    gen = torch.Generator().manual_seed(3)
    pixels = torch.randn(2, 3, side, side, generator=gen)  # [B, 3, H, W]
    tokens = open_clip.get_tokenizer("ViT-B-32")(["a red circle", "two blue squares"])  # [B, 77]
    return pixels, tokens


def test_registered_by_name_and_idempotent() -> None:
    assert set(SMALL_MODELS) <= set(open_clip.list_models())  # importing clipvil.encoders registered them
    before = list(open_clip.list_models())
    assert register_model_configs() == sorted(SMALL_MODELS)
    assert register_model_configs() == sorted(SMALL_MODELS)
    assert open_clip.list_models() == before
    assert set(SMALL_MODELS) <= set(list_encoders())
    files = sorted(p.name for p in MODEL_CONFIG_DIR.glob("*.json"))
    assert files == ["clipvil-rn-tiny.json", "clipvil-vit-tiny.json"]


def test_architectures_are_the_documented_ones() -> None:
    rn = open_clip.create_model("clipvil-rn-tiny")
    assert isinstance(rn.visual, ModifiedResNet)
    assert [len(getattr(rn.visual, f"layer{i}")) for i in range(1, 5)] == [1, 1, 1, 1]
    assert rn.visual.image_size == 96 and rn.visual.attnpool.c_proj.out_features == 128
    vit = open_clip.create_model("clipvil-vit-tiny")
    assert isinstance(vit.visual, VisionTransformer)
    assert len(vit.visual.transformer.resblocks) == 4 and vit.visual.patch_size == (16, 16)
    assert vit.visual.grid_size == (8, 8) and vit.text_projection.shape == (128, 128)
    for model in (rn, vit):
        assert model.context_length == 77 and model.vocab_size == 49408


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_grid_sizes_through_build_encoder(name: str) -> None:
    enc = build_encoder(name)
    side = enc.native_size
    with torch.inference_mode():
        grid = enc(torch.randn(1, 3, side, side), pooled=True)
    assert grid.hw == ((3, 3) if name == "clipvil-rn-tiny" else (8, 8))
    assert grid.pooled is not None and grid.pooled.shape == (1, 128)


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_contrastive_loss_falls_in_a_few_steps(name: str) -> None:
    """open_clip's ClipLoss on one fixed batch of 8 pairs: the tiny model fits it quickly."""
    torch.manual_seed(0)
    model = open_clip.create_model(name)
    side = model.visual.image_size if isinstance(model.visual.image_size, int) else model.visual.image_size[0]
    pixels = torch.randn(8, 3, side, side)  # [8, 3, H, W]
    captions = [
        "a red circle",
        "a blue square",
        "two green stars",
        "a black cross",
        "a white diamond",
        "an orange triangle",
        "purple things",
        "yellow shapes",
    ]
    tokens = open_clip.get_tokenizer(name)(captions)  # [8, 77]
    loss_fn = open_clip.ClipLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    losses = []
    for _ in range(15):
        img, txt, scale = model(pixels, tokens)
        loss = loss_fn(img, txt, scale)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(torch.log(torch.tensor(8.0)).item(), abs=0.5)  # chance at the start
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("name", SMALL_MODELS)
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_export_loads_back_in_open_clip_and_build_encoder(tmp_path: Path, name: str, suffix: str) -> None:
    model = _perturbed(name)
    ckpt, cfg_path = export_open_clip_checkpoint(model, name, tmp_path / "run" / f"epoch_3{suffix}", epoch=3)
    assert ckpt.is_file() and cfg_path == tmp_path / "run" / f"{name}.json"
    assert json.loads(cfg_path.read_text()) == open_clip.get_model_config(name)
    if suffix == ".pt":
        raw = torch.load(ckpt, map_location="cpu", weights_only=True)
        assert (
            raw["epoch"] == 3
            and raw["name"] == name
            and not any(k.startswith("module.") for k in raw["state_dict"])
        )

    pixels, tokens = _inputs(model)
    with torch.inference_mode():
        want_img, want_txt = model.encode_image(pixels), model.encode_text(tokens)  # [B, D], [B, D]
        want_grid = model.visual.forward_intermediates(pixels, indices=1, intermediates_only=True)
        feats = want_grid["image_intermediates"][-1].flatten(2).transpose(1, 2)  # [B, N, C]
        if isinstance(model.visual, VisionTransformer):
            feats = model.visual.ln_post(feats)  # clipvil's last-block tokens are after the final LayerNorm

    torch.manual_seed(99)  # a different seed: equal outputs can only come from the file
    loaded = open_clip.create_model(name, pretrained=str(ckpt)).eval()
    with torch.inference_mode():
        torch.testing.assert_close(loaded.encode_image(pixels), want_img, rtol=0, atol=0)
        torch.testing.assert_close(loaded.encode_text(tokens), want_txt, rtol=0, atol=0)
    torch.testing.assert_close(loaded.logit_scale, model.logit_scale)

    enc = build_encoder(name, weights=ckpt)
    with torch.inference_mode():
        grid = enc(pixels, pooled=True)
    torch.testing.assert_close(grid.feats, feats, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grid.pooled, want_img, rtol=1e-5, atol=1e-5)


def test_export_unwraps_module_and_rejects_non_clip(tmp_path: Path) -> None:
    model = _perturbed("clipvil-vit-tiny")

    class Wrapper(torch.nn.Module):  # what DDP looks like from outside: the model under .module
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.module = inner

    ckpt, _ = export_open_clip_checkpoint(Wrapper(model), "clipvil-vit-tiny", tmp_path / "w.pt")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert set(state) == set(model.state_dict())
    with pytest.raises(ValueError, match="not an open_clip CLIP model"):
        export_open_clip_checkpoint(torch.nn.Linear(2, 2), "clipvil-vit-tiny", tmp_path / "x.pt")
    with pytest.raises(ValueError, match="no model config 'nope'"):
        export_open_clip_checkpoint(model, "nope", tmp_path / "y.pt")
