"""Builders of weight files in the real formats (random weights), shared by the encoder tests."""

from __future__ import annotations

from pathlib import Path

import open_clip
import torch
from torch import nn


class _Archive(nn.Module):
    """Holds a CLIP model's children and parameters under the same names, with a trivial traced forward.

    The saved TorchScript zip has the layout of OpenAI's released archives (code/ + data/, state-dict keys
    visual.*, transformer.*, token_embedding.*, ...) without the minute-long trace of the real forward."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        for name, child in clip.named_children():
            self.add_module(name, child)
        for name, param in clip.named_parameters(recurse=False):
            self.register_parameter(name, param)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.logit_scale


def openai_archive(path: Path, name: str = "RN50", seed: int = 0) -> nn.Module:
    """Writes a random CLIP `name` as an OpenAI-style TorchScript archive (fp16 weights); returns the model (fp32)."""
    torch.manual_seed(seed)
    model = open_clip.create_model(f"{name}-quickgelu", pretrained=None)
    open_clip.model.convert_weights_to_fp16(model)  # OpenAI archives hold fp16 weights
    traced = torch.jit.trace(_Archive(model).eval(), torch.ones(1))
    torch.jit.save(traced, str(path))
    return model.float()


def open_clip_checkpoint(path: Path, name: str, seed: int = 0, *, ddp: bool = True) -> nn.Module:
    """Writes a random CLIP `name` the way open_clip's trainer saves it: {epoch, name, state_dict: module.*}."""
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    state = {("module." + k if ddp else k): v for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    else:
        torch.save({"epoch": 32, "name": name, "state_dict": state}, path)
    return model
