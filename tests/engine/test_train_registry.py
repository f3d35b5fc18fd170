"""The task registry."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import train_toy

from clipvil.engine.registry import get_task, register_task, registered_tasks


def test_registered_toy_task() -> None:
    entry = get_task("toy_regression")
    assert entry.config_cls is train_toy.ToyConfig and entry.factory is train_toy.ToyTask
    assert "toy_regression" in registered_tasks()
    register_task("toy_regression", train_toy.ToyConfig, train_toy.ToyTask)  # re-import: no-op


def test_conflicts_and_unknown_names() -> None:
    @dataclass
    class Other:
        x: int = 1

    with pytest.raises(ValueError, match="already registered"):
        register_task("toy_regression", Other, train_toy.ToyTask)
    with pytest.raises(KeyError, match="unknown task 'no_such_task'.*toy_regression"):
        get_task("no_such_task")

    @dataclass
    class Named:
        name: str = "x"

    with pytest.raises(ValueError, match="field 'name'"):
        register_task("named_task", Named, train_toy.ToyTask)


def test_a_family_is_one_new_folder_under_clipvil_families_loaded_on_first_use(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    import clipvil.families
    from clipvil.engine import registry

    family = tmp_path / "autoload_probe"
    family.mkdir()
    (family / "__init__.py").write_text(
        "from dataclasses import dataclass\n"
        "from clipvil.engine.registry import register_task\n"
        "@dataclass\nclass ProbeConfig:\n    size: int = 1\n"
        "register_task('autoload_probe', ProbeConfig, lambda cfg, ctx: None)\n"
    )
    monkeypatch.setattr(registry, "_TASKS", dict(registry._TASKS))
    monkeypatch.setattr(registry, "_loaded_families", [])
    monkeypatch.setattr(clipvil.families, "__path__", [*clipvil.families.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "clipvil.families.autoload_probe", raising=False)
    assert "autoload_probe" not in registered_tasks()
    assert get_task("autoload_probe").config_cls.__name__ == "ProbeConfig"  # no list names the new family
    assert "autoload_probe" in registry.load_families() and "vqa" in registered_tasks()
    sys.modules.pop("clipvil.families.autoload_probe", None)
