"""Weights from local files in the formats users hold; wrong architectures get clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from clipvil.encoders import WeightsError, build_encoder
from clipvil.encoders.weights import detect_format, sha256_file

from .helpers import open_clip_checkpoint, openai_archive


def _visual_equal(enc: torch.nn.Module, model: torch.nn.Module) -> None:
    ours = enc.visual.state_dict()
    for k, v in model.visual.state_dict().items():
        torch.testing.assert_close(ours[k], v.to(ours[k].dtype), msg=k)


def test_openai_torchscript_archive(tmp_path: Path) -> None:
    path = tmp_path / "RN50.pt"
    model = openai_archive(path, "RN50")
    assert detect_format(path) == "openai-torchscript"
    enc = build_encoder("RN50", weights=path)
    _visual_equal(enc, model)
    assert enc.weights_info.format == "openai-torchscript"
    assert enc.weights_info.sha256 == sha256_file(path)
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(enc(x, pooled=True).pooled, model.visual(x), rtol=1e-4, atol=1e-4)


def test_openai_vit_archive_uses_quickgelu(tmp_path: Path) -> None:
    path = tmp_path / "ViT-B-32.pt"
    model = openai_archive(path, "ViT-B-32")
    enc = build_encoder("ViT-B-32", weights=path)
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(enc(x, pooled=True).pooled, model.visual(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("suffix", [".bin", ".safetensors"])
def test_open_clip_checkpoints(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"vitb32{suffix}"
    model = open_clip_checkpoint(path, "ViT-B-32")
    enc = build_encoder("ViT-B-32", weights=path)
    _visual_equal(enc, model)
    assert enc.weights_info.format == ("safetensors" if suffix == ".safetensors" else "torch")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_timm_weight_file(tmp_path: Path, suffix: str) -> None:
    torch.manual_seed(1)
    ref = timm.create_model("resnet50", pretrained=False)
    path = tmp_path / f"resnet50{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(ref.state_dict(), str(path))
    else:
        torch.save(ref.state_dict(), path)
    enc = build_encoder("imagenet-rn50", weights=path)
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(enc.model.state_dict()[k], v)


def test_wrong_clip_architecture_is_named(tmp_path: Path) -> None:
    path = tmp_path / "rn101.pt"
    open_clip_checkpoint(path, "RN101", ddp=False)
    with pytest.raises(WeightsError, match=r"rn101\.pt: these weights are not a RN50 checkpoint .*unexpected keys: layer3.10"):
        build_encoder("RN50", weights=path)


def test_wrong_vit_patch_size_is_named(tmp_path: Path) -> None:
    path = tmp_path / "b16.safetensors"
    open_clip_checkpoint(path, "ViT-B-16")
    with pytest.raises(WeightsError, match=r"not a ViT-B-32 checkpoint .*shape mismatches: conv1\.weight"):
        build_encoder("ViT-B-32", weights=path)


def test_wrong_timm_architecture_is_named(tmp_path: Path) -> None:
    path = tmp_path / "r18.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), path)
    with pytest.raises(WeightsError, match="not a imagenet-rn50 checkpoint"):
        build_encoder("imagenet-rn50", weights=path)


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="nope.pt: weight file not found"):
        build_encoder("RN50", weights=tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x04 definitely not a checkpoint")
    with pytest.raises(WeightsError, match="bad.pt: cannot read weights"):
        build_encoder("RN50", weights=bad)
    text_only = tmp_path / "text.pt"
    torch.save({"transformer.w": torch.zeros(2)}, text_only)
    with pytest.raises(WeightsError, match="no 'visual.\\*' weights"):
        build_encoder("RN50", weights=text_only)
