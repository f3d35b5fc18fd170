"""Shared pieces of the CLIP task tests: a tiny synthetic world, run configs for it, an OpenAI-style archive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import open_clip
import torch
from torch import nn

from clipvil.data.synthetic import make_data
from clipvil.engine import RunConfig, config_from_dict

FAST = {"progress": False, "tensorboard": False, "log_every": 1, "checkpoint_every": 1}


def tiny_world(root: Path, images: int = 40) -> Path:
    """A synthetic world of `images` images (80/10/10 split), made once per directory."""
    make_data(root, images, seed=5, progress=False, workers=1)
    return root


def clip_config(world: Path, out: Path, model: str = "clipvil-vit-tiny", task: dict[str, Any] | None = None,
                train: dict[str, Any] | None = None, **sections: Any) -> RunConfig:
    """A clip-task run on the tiny world's Karpathy captions (batch 8, 3 updates)."""
    data = {"format": "karpathy", "root": str(world / "captions"), "image_root": str(world / "coco"),
            "splits": {"train": "train", "val": "val"}, "captions_per_image": 5}
    return config_from_dict({
        "task": {"name": "clip", "model": model, "data": data, **(task or {})},
        "optim": sections.pop("optim", {"name": "adamw", "lr": 1e-3, "weight_decay": 0.1}),
        "train": {"batch_size": 8, "max_steps": 3, "eval_splits": [], **FAST, **(train or {})},
        "out_dir": str(out), **sections,
    })


class _Archive(nn.Module):
    """A CLIP's children and parameters under their own names, with a trivial traced forward: a TorchScript
    zip in the layout of OpenAI's released archives (code/ + data/, keys visual.*, transformer.* ...)."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        for name, child in clip.named_children():
            self.add_module(name, child)
        for name, param in clip.named_parameters(recurse=False):
            self.register_parameter(name, param)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.logit_scale


def openai_archive(path: Path, name: str = "clipvil-rn-tiny", seed: int = 3) -> dict[str, torch.Tensor]:
    """Writes a random QuickGELU CLIP `name` as an OpenAI-style archive (fp16); returns its fp32 state dict."""
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None, force_quick_gelu=True)
    open_clip.model.convert_weights_to_fp16(model)
    torch.jit.save(torch.jit.trace(_Archive(model).eval(), torch.ones(1)), str(path))
    return {k: v.float() for k, v in model.state_dict().items()}
