"""Checkpoint files: atomic replacement, safe loading, and clear errors for foreign weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from clipvil.engine import checkpoint as ckpt


def test_round_trip_and_atomic_replace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoints" / "last.pt"
    ckpt.save_checkpoint({"step": 1, "model": {"w": torch.ones(2)}}, path)
    assert ckpt.load_checkpoint(path)["step"] == 1

    real_save = torch.save

    def dying_save(obj: object, f: Path) -> None:  # writes half a file, then the process "dies"
        real_save(obj, f)
        Path(f).write_bytes(Path(f).read_bytes()[:20])
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint({"step": 2, "model": {"w": torch.zeros(2)}}, path)
    monkeypatch.undo()
    state = ckpt.load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["model"]["w"], torch.ones(2))
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]  # no temporary left behind


def test_stale_temporaries_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".last.pt.tmp-123").write_bytes(b"half")
    (tmp_path / "last.pt").write_bytes(b"keep")
    ckpt.remove_stale_temporaries(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_foreign_or_torn_files_are_refused(tmp_path: Path) -> None:
    torch.save({"w": torch.ones(1)}, tmp_path / "plain.pt")
    with pytest.raises(RuntimeError, match=r"plain\.pt: not a clipvil training checkpoint"):
        ckpt.load_checkpoint(tmp_path / "plain.pt")
    (tmp_path / "torn.pt").write_bytes(b"PK\x03\x04 torn")
    with pytest.raises(RuntimeError, match=r"torn\.pt: cannot read checkpoint"):
        ckpt.load_checkpoint(tmp_path / "torn.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        ckpt.load_checkpoint(tmp_path / "missing.pt")


def test_architecture_mismatch_names_keys_and_file() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
    other = nn.Sequential(nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 1), nn.Linear(1, 1)).state_dict()
    del other["2.bias"]
    with pytest.raises(ckpt.CheckpointMismatchError) as err:
        ckpt.load_model_state(model, other, "runs/x/last.pt")
    text = str(err.value)
    assert text.startswith("runs/x/last.pt: checkpoint does not fit Sequential")
    assert "1 shape mismatches: 0.weight: file (3, 5) vs model (3, 4)" in text
    assert "1 missing keys: 2.bias" in text and "2 unexpected keys: 3.bias; 3.weight" in text


def test_non_strict_load_reports_missing_and_unexpected() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    state = {"0.weight": torch.full((2, 2), 3.0), "0.bias": torch.zeros(2), "pretrain_head.w": torch.ones(1)}
    missing, unexpected = ckpt.load_model_state(model, state, "pre.pt", strict=False)
    assert missing == ["1.bias", "1.weight"] and unexpected == ["pretrain_head.w"]
    assert torch.equal(model[0].weight, torch.full((2, 2), 3.0))


def test_first_non_finite() -> None:
    model = nn.Linear(2, 2)
    assert ckpt.first_non_finite(model) is None
    with torch.no_grad():
        model.bias[1] = float("inf")
    assert ckpt.first_non_finite(model) == "bias"
