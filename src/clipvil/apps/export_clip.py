"""`clipvil export-clip --checkpoint P --out DIR`: a trained `clip` or `classify` run -> a weight file the
encoders load (`build_encoder(name, weights=...)`, `clipvil extract --weights ...`, open_clip itself).

- clip runs: the whole CLIP as an open_clip checkpoint `DIR/<arch>.pt` ({"epoch", "name", "state_dict"}) and
  its model config `DIR/<arch>.json` (clipvil.encoders.small_clip.export_open_clip_checkpoint);
- classify runs on an open_clip image tower: the same files, the trained tower under `visual.*` beside the
  architecture's randomly initialised text tower (seed 0; the encoders read `visual.*` only);
- classify runs on timm's resnet50: a timm state dict `DIR/imagenet-rn50.pt` for `build_encoder("imagenet-rn50")`
  (its own head is dropped; a zero 1000-way `fc` keeps timm's ImageNet layout, unused by the grid).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from clipvil.common.atomic import atomic_write
from clipvil.encoders.small_clip import export_open_clip_checkpoint
from clipvil.engine.checkpoint import load_checkpoint, load_model_state
from clipvil.families.clip.model import create_clip

TIMM_EXPORTS = {"resnet50": "imagenet-rn50"}  # timm architecture -> the encoder name that loads it


@dataclass(frozen=True)
class ExportResult:
    """What export_clip wrote."""

    weights: Path  # the weight file to pass as --weights
    config: Path | None  # the open_clip model config beside it (None for timm)
    encoder: str  # the encoder name to pass with it (build_encoder / clipvil extract --encoder)
    task: str  # the task the checkpoint came from
    step: int  # its training step


def _prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def export_clip(checkpoint: str | Path, out: str | Path) -> ExportResult:
    """Writes the encoder weights of a clip / classify training checkpoint under `out` (see the module doc)."""
    state = load_checkpoint(checkpoint)
    task_cfg = state["config"]["task"]
    task, step, out = task_cfg["name"], int(state["train_state"]["step"]), Path(out)
    if task == "clip":
        name = task_cfg["model"]
        model = create_clip(name, quick_gelu=task_cfg.get("quick_gelu"))
        load_model_state(model, state["model"], checkpoint)
    elif task == "classify" and not task_cfg.get("timm_model"):
        name = task_cfg["model"]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = create_clip(name)
        load_model_state(model.visual, _prefixed(state["model"], "visual."), checkpoint)
    elif task == "classify":
        arch = task_cfg["timm_model"]
        if arch not in TIMM_EXPORTS:
            raise ValueError(f"{checkpoint}: timm model {arch!r} has no clipvil encoder; exportable: "
                             f"{sorted(TIMM_EXPORTS)}")
        trunk = {k: v for k, v in state["model"].items() if not k.startswith("fc.")}
        width = trunk["layer4.2.bn3.weight"].shape[0]  # timm's ImageNet layout: a 1000-way fc the grid never uses
        trunk.update({"fc.weight": torch.zeros(1000, width), "fc.bias": torch.zeros(1000)})
        path = out / f"{TIMM_EXPORTS[arch]}.pt"
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: torch.save(trunk, tmp))
        return ExportResult(path, None, TIMM_EXPORTS[arch], task, step)
    else:
        raise ValueError(f"{checkpoint}: a {task!r} checkpoint holds no CLIP or classifier tower to export "
                         "(export-clip takes clip and classify runs)")
    weights, config = export_open_clip_checkpoint(model, name, out / f"{name}.pt", epoch=step)
    return ExportResult(weights, config, name, task, step)


__all__ = ["ExportResult", "export_clip"]
