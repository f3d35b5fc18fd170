"""Weights from local files in the formats users hold; wrong architectures get clear errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import open_clip
import pytest
import timm
import torch

from clipvil.encoders import Activation, WeightsError, build_encoder
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
    assert enc.activation == Activation("quick_gelu", "OpenAI TorchScript archive")
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
    message = r"rn101\.pt: these weights are not a RN50 checkpoint .*unexpected keys: layer3.10"
    with pytest.raises(WeightsError, match=message):
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


# --- QuickGELU: OpenAI's ViTs were trained with it; GELU on their weights makes every feature wrong ------------

def _visual(quick_gelu: bool, seed: int = 0) -> torch.nn.Module:
    """open_clip's own ViT-B-32 vision tower (random weights) with the given activation."""
    cfg = open_clip.get_model_config("ViT-B-32")
    torch.manual_seed(seed)
    return open_clip.model._build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"], quick_gelu=quick_gelu).eval()


def _state(visual: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"visual.{k}": v for k, v in visual.state_dict().items()}


def _acts(enc: torch.nn.Module) -> set[str]:
    return {type(b.mlp.gelu).__name__ for b in enc.visual.transformer.resblocks}


def _same_pooled(enc: torch.nn.Module, ref: torch.nn.Module) -> None:
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(enc(x, pooled=True).pooled, ref(x), rtol=1e-4, atol=1e-4)


def test_quickgelu_model_name_is_accepted(tmp_path: Path) -> None:
    ref = _visual(quick_gelu=True)
    from safetensors.torch import save_file

    save_file(_state(ref), str(tmp_path / "vitb32.safetensors"))
    enc = build_encoder("ViT-B-32-quickgelu", weights=tmp_path / "vitb32.safetensors")
    assert enc.name == "ViT-B-32-quickgelu" and _acts(enc) == {"QuickGELU"}
    assert enc.activation == Activation("quick_gelu", "model name")
    _same_pooled(enc, ref)


def test_open_clip_checkpoint_named_quickgelu_gets_quickgelu(tmp_path: Path) -> None:
    """open_clip's trainer saves the run name (model_<name>-lr_...) beside the state dict: it tells."""
    path, ref = tmp_path / "epoch_32.pt", _visual(quick_gelu=True)
    run = "2024_05_01-12_00_00-model_ViT-B-32-quickgelu-lr_0.0005-b_256-j_8-p_amp"
    torch.save({"epoch": 32, "name": run, "state_dict": {f"module.{k}": v for k, v in _state(ref).items()}}, path)
    enc = build_encoder("ViT-B-32", weights=path)
    assert _acts(enc) == {"QuickGELU"} and enc.activation.source == f"checkpoint name {run!r}"
    _same_pooled(enc, ref)
    torch.save({"epoch": 32, "name": run.replace("-quickgelu", ""), "state_dict": _state(ref)}, path)
    assert _acts(build_encoder("ViT-B-32", weights=path)) == {"GELU"}  # the name says plain GELU: no guess


def test_openai_state_dict_saved_as_pt_gets_quickgelu(tmp_path: Path) -> None:
    """torch.save(openai_model.state_dict()) keeps OpenAI's bookkeeping entries: they tell."""
    path = tmp_path / "ViT-B-32-openai.bin"
    state = {**_state(_visual(quick_gelu=True)), "input_resolution": torch.tensor(224),
             "context_length": torch.tensor(77), "vocab_size": torch.tensor(49408)}
    torch.save(state, path)
    enc = build_encoder("ViT-B-32", weights=path)
    assert _acts(enc) == {"QuickGELU"} and enc.activation.source.startswith("OpenAI state dict")


def test_hub_layout_config_says_quickgelu(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file(_state(_visual(quick_gelu=True)), str(tmp_path / "open_clip_model.safetensors"))
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": {"quick_gelu": True}}))
    enc = build_encoder("ViT-B-32", weights=tmp_path / "open_clip_model.safetensors")
    assert _acts(enc) == {"QuickGELU"} and enc.activation.source == "open_clip_config.json"


def test_file_that_cannot_tell_gets_gelu_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    plain = tmp_path / "unknown.pt"
    torch.save(_state(_visual(quick_gelu=False)), plain)
    with caplog.at_level(logging.WARNING, logger="clipvil.encoders.registry"):
        enc = build_encoder("ViT-B-32", weights=plain)
    assert _acts(enc) == {"GELU"} and enc.activation.name == "gelu"
    assert "cannot tell whether ViT-B-32 was trained with QuickGELU" in caplog.text
    assert "name the encoder ViT-B-32-quickgelu" in caplog.text
    assert build_encoder("RN50").activation is None  # a ResNet has no GELU to choose
