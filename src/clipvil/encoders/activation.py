"""Which MLP activation a CLIP ViT runs with: QuickGELU (OpenAI's CLIP, open_clip's `-quickgelu` runs) or GELU.

Nothing in a state dict holds the activation (neither has parameters), and a tower run with the wrong one gives
wrong features everywhere. open_clip itself decides by the pretrained *tag* it downloads; we read local files,
so the decision uses what the file tells, in this order:

1. the model name: open_clip's `-quickgelu` names (e.g. ``ViT-B-32-quickgelu``) → QuickGELU, whatever the file;
2. an OpenAI TorchScript archive → QuickGELU;
3. a state dict holding OpenAI's bookkeeping entries (``input_resolution``, ``context_length``, ``vocab_size``:
   what ``torch.save(openai_model.state_dict())`` keeps) → QuickGELU;
4. ``open_clip_config.json`` beside the file (open_clip's hub layout): its ``model_cfg.quick_gelu``;
5. an open_clip trainer checkpoint's saved ``name`` (the run name holds ``model_<name>``): QuickGELU when the
   model name ends in ``-quickgelu``, else GELU;
6. otherwise GELU, with a warning that the file cannot tell (and a louder one when its weights are fp16, as
   OpenAI's are).
"""

from __future__ import annotations

import re

import torch

from clipvil.encoders.tower import Activation
from clipvil.encoders.weights import WeightFile

OPENAI_STATE_KEYS = ("input_resolution", "context_length", "vocab_size")
QUICK, PLAIN = "quick_gelu", "gelu"
_RUN_MODEL = re.compile(r"(?:^|-)model_(?P<model>.+?)(?:-lr_|$)")


def _from_saved_name(saved: str, known: set[str]) -> str | None:
    """The activation an open_clip trainer checkpoint's "name" implies, or None when it does not say."""
    match = _RUN_MODEL.search(saved)
    model = match.group("model") if match else saved
    if model.endswith("-quickgelu"):
        return QUICK
    return PLAIN if model in known else None


def choose_activation(
    name: str, config_quick_gelu: bool, weights: WeightFile | None, path: str | None, known_models: set[str]
) -> tuple[Activation, str | None]:
    """The activation for ViT `name` (config_quick_gelu: what its open_clip config says) and the file's hints;
    returns it with a warning to log when the choice is a guess or contradicts the name (else None)."""
    if weights is None:
        return Activation(QUICK, "model name") if config_quick_gelu else Activation(PLAIN, "model config"), None
    said, source = None, ""
    if weights.format == "openai-torchscript":
        said, source = QUICK, "OpenAI TorchScript archive"
    elif any(k in weights.state for k in OPENAI_STATE_KEYS):
        said, source = QUICK, "OpenAI state dict entries (input_resolution, context_length, vocab_size)"
    elif weights.open_clip_config is not None:
        model_cfg = weights.open_clip_config.get("model_cfg", {})
        said, source = (QUICK if model_cfg.get("quick_gelu", False) else PLAIN), "open_clip_config.json"
    elif weights.saved_name is not None:
        said = _from_saved_name(weights.saved_name, known_models)
        source = f"checkpoint name {weights.saved_name!r}"
    if config_quick_gelu:
        warn = None
        if said == PLAIN:
            warn = f"{path}: the {source} says GELU but the encoder name {name!r} asks for QuickGELU; using QuickGELU"
        return Activation(QUICK, "model name"), warn
    if said is not None:
        return Activation(said, source), None
    fp16 = any(v.dtype == torch.float16 for k, v in weights.state.items() if k.startswith("visual."))
    hint = " Its weights are fp16, as OpenAI's archives are." if fp16 else ""
    return Activation(PLAIN, "default (the file does not tell)"), (
        f"{path}: cannot tell whether {name} was trained with QuickGELU (OpenAI's weights, open_clip's -quickgelu "
        f"runs) or GELU; using GELU.{hint} If these are OpenAI or -quickgelu weights, name the encoder "
        f"{name}-quickgelu."
    )
