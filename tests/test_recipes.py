"""`clipvil.recipes` in the source tree: names resolve to the repository's configs/ files (through the
src/clipvil/configs link), partials are not listed, unknown names get close matches."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipvil import recipes

REPO = Path(__file__).resolve().parents[1]


def test_names_resolve_to_the_repository_files() -> None:
    expected = (REPO / "configs/demo/mcan_synthetic.yaml").resolve()
    for name in ("configs/demo/mcan_synthetic.yaml", "demo/mcan_synthetic.yaml", "demo/mcan_synthetic",
                 "./configs/demo/mcan_synthetic"):
        assert recipes.find(name).resolve() == expected
    assert recipes.resolve(str(REPO / "configs/vqa/_mcan.yaml")) == REPO / "configs/vqa/_mcan.yaml"
    assert recipes.resolve("vqa/mcan_rn50").resolve() == (REPO / "configs/vqa/mcan_rn50.yaml").resolve()


def test_available_lists_recipes_without_partials() -> None:
    names = recipes.available()
    on_disk = sorted(p.relative_to(REPO / "configs").with_suffix("").as_posix()
                     for p in (REPO / "configs").rglob("*.yaml") if not p.name.startswith("_"))
    assert names == on_disk and "vqa/mcan_rn50" in names and "vqa/_mcan" not in names


def test_unknown_names_are_refused_with_close_matches() -> None:
    with pytest.raises(FileNotFoundError, match=r"no recipe 'vqa/mcan_rn5' .*did you mean vqa/mcan_rn50"):
        recipes.find("vqa/mcan_rn5")
    with pytest.raises(FileNotFoundError, match="no recipe"):
        recipes.find("../pyproject.toml")
