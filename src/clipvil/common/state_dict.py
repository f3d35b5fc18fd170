"""The one state-dict comparison, with one error format, for every loader (weights files, checkpoints,
`init_from`): which keys are missing, unexpected, or of another shape."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch


@dataclass
class StateDictDiff:
    """How a state dict from a file differs from a module's own."""

    missing: list[str] = field(default_factory=list)  # keys the module has and the file lacks
    unexpected: list[str] = field(default_factory=list)  # keys the file has and the module lacks
    mismatched: list[str] = field(default_factory=list)  # "key: file (a, b) vs model (c, d)"

    def problems(self, strict: bool = True) -> list[str]:
        """The differences that matter: shape mismatches always, missing/unexpected keys when `strict`."""
        out = []
        groups = [("shape mismatches", self.mismatched)]
        if strict:
            groups += [("missing keys", self.missing), ("unexpected keys", self.unexpected)]
        for label, items in groups:
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                out.append(f"{len(items)} {label}: {'; '.join(items[:5])}{more}")
        return out

    def describe(self, strict: bool = True) -> str:
        """One line: '2 shape mismatches: ... | 1 missing keys: ...' ('' when nothing matters)."""
        return " | ".join(self.problems(strict))


def diff_state_dicts(model_state: Mapping[str, torch.Tensor], file_state: Mapping[str, torch.Tensor]) -> StateDictDiff:
    """Compares a file's tensors with a module's `state_dict()` by key and shape."""
    shared = sorted(set(model_state) & set(file_state))
    return StateDictDiff(
        missing=sorted(set(model_state) - set(file_state)),
        unexpected=sorted(set(file_state) - set(model_state)),
        mismatched=[
            f"{k}: file {tuple(file_state[k].shape)} vs model {tuple(model_state[k].shape)}"
            for k in shared
            if tuple(model_state[k].shape) != tuple(file_state[k].shape)
        ],
    )


def remap_keys(state: Mapping[str, torch.Tensor], key_map: Mapping[str, str]) -> dict[str, torch.Tensor]:
    """Renames keys by prefix: {"encoder.": "trunk."} turns "encoder.x" into "trunk.x"; the longest matching
    prefix wins; a prefix mapped to "-" drops those keys; keys matching no prefix are kept as they are."""
    prefixes = sorted(key_map, key=len, reverse=True)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        prefix = next((p for p in prefixes if key.startswith(p)), None)
        if prefix is None:
            out[key] = value
        elif key_map[prefix] != "-":
            out[key_map[prefix] + key[len(prefix):]] = value
    return out
