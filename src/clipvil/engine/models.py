"""Model registry: a model name -> its architecture config dataclass, presets and constructor.

Task code, recipes and the contract tests all go through this one table, so a new head is a new module
that registers itself, not a new branch in an if/else:

    register_model("mcan", family="vqa", config_cls=MCANConfig, builder=MCAN)   # families/vqa/mcan.py

A *family* names the constructor signature that every model of it shares (the contract tests build
each registered model of a family from the same inputs):

    vqa:  builder(cfg, *, grid_dim, vocab_size, n_answers); forward(GridFeatures, tokens [B, T]) -> [B, A]

Other families (caption, vl, nav, grounding) document their signature where they register.
`build_model(name, preset, overrides, **kwargs)` makes one: the preset's config with `overrides` applied.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from clipvil.engine.registry import load_families

_MODULES = (
    "clipvil.families.vqa.mcan",
    "clipvil.families.vqa.pythia",
    "clipvil.families.vqa.movie_mcan",
    "clipvil.families.caption.model",
    "clipvil.families.vl.transformer",
    "clipvil.families.vln.envdrop",
    "clipvil.families.grounding.model",
)


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its name, family, architecture config dataclass and constructor."""

    name: str
    family: str  # shared constructor/forward signature (see the module docstring)
    config_cls: type  # frozen dataclass of architecture settings; `config_cls.preset(name)` if it has presets
    builder: Callable[..., nn.Module]  # builder(cfg, **family_kwargs) -> nn.Module


_MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, *, family: str, config_cls: type, builder: Callable[..., nn.Module]) -> None:
    """Registers a model; registering the same entry again is a no-op, another one under a taken name fails."""
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"model {name!r}: config_cls must be a dataclass, got {config_cls!r}")
    entry = ModelEntry(name, family, config_cls, builder)
    known = _MODELS.get(name)
    if known is not None and known != entry:
        raise ValueError(f"model {name!r} is already registered by {known.builder!r}")
    _MODELS[name] = entry


def get_model(name: str) -> ModelEntry:
    """The entry of a registered model; KeyError naming the known ones otherwise."""
    if name not in _MODELS:
        load_families()
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(registered_models())}")
    return _MODELS[name]


def registered_models(family: str | None = None) -> list[str]:
    """Names of every registered model (of one family when given)."""
    load_families()
    return sorted(n for n, e in _MODELS.items() if family is None or e.family == family)


def model_config(name: str, preset: str = "", overrides: dict[str, Any] | None = None) -> Any:
    """The architecture config of `name`: its preset (or the defaults) with `overrides` applied.

    Raises ValueError naming the unknown fields of an override."""
    entry = get_model(name)
    base = entry.config_cls.preset(preset) if preset else entry.config_cls()
    overrides = dict(overrides or {})
    known = {f.name for f in dataclasses.fields(entry.config_cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(
            f"model {name!r}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    try:
        hints = typing.get_type_hints(entry.config_cls)
    except (NameError, TypeError):  # an annotation that does not resolve here: leave the values to the model
        hints = {}
    for key, value in overrides.items():
        _check_setting(name, key, value, hints.get(key))
    return dataclasses.replace(base, **overrides)


_SCALARS: dict[type, str] = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _check_setting(model: str, key: str, value: Any, hint: Any) -> None:
    """A ValueError naming the setting when `value` is not of its field's scalar type (int, float, bool, str,
    or an Optional / Literal of those); other field types are left to the model's own checks."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Literal:
        if value not in args:
            raise ValueError(f"model {model!r}: {key} must be one of {list(args)}, got {value!r}")
        return
    allowed = list(args) if typing.get_origin(hint) in (typing.Union, types.UnionType) else [hint]
    if type(None) in allowed and value is None:
        return
    scalars = [a for a in allowed if a in _SCALARS]
    if not scalars or len(scalars) != len([a for a in allowed if a is not type(None)]):
        return  # a container or another type: not checked here

    def fits(kind: type) -> bool:
        if kind is float:
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind is int:
            return isinstance(value, int) and not isinstance(value, bool)
        return isinstance(value, kind)

    if not any(fits(k) for k in scalars):
        want = " or ".join(_SCALARS[k] for k in scalars)
        raise ValueError(f"model {model!r}: {key} must be {want}, got {value!r}")


def build_model(name: str, preset: str = "", overrides: dict[str, Any] | None = None, **kwargs: Any) -> nn.Module:
    """A fresh model of `name` from its preset + overrides; `kwargs` are the family's constructor arguments."""
    return get_model(name).builder(model_config(name, preset, overrides), **kwargs)
