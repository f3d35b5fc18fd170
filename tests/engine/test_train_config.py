"""Typed YAML configs: sections, overrides, includes, unknown keys, bad values, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import train_toy  # noqa: F401  (registers toy_regression)
from train_toy import ToyConfig

from clipvil.engine import ConfigError, ExtraOptimizerConfig, OptimConfig, load_config, save_config

FULL = """\
task:
  name: toy_regression
  dim: 6
optim:
  name: adamax
  lr: 1e-2          # PyYAML reads this as a string; the float field accepts it
  betas: [0.9, 0.98]
  eps: 1.0e-9
schedule:
  warmup: 1000
  warmup_factor: 0.2
  milestones: [15000, 18000]
extra_optimizers:
  trunk:
    modules: [body]
    optim: {name: sgd, lr: 0.003, momentum: 0.9}
train:
  batch_size: 512
  max_steps: 22000
  amp: bf16
out_dir: runs/x
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_full_file_is_typed(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "run.yaml", FULL))
    assert cfg.task_name == "toy_regression"
    assert cfg.task == ToyConfig(dim=6)
    assert cfg.optim == OptimConfig(name="adamax", lr=0.01, betas=(0.9, 0.98), eps=1e-9)
    assert isinstance(cfg.optim.lr, float) and isinstance(cfg.optim.betas, tuple)
    assert cfg.schedule.milestones == [15000, 18000] and cfg.schedule.warmup_factor == 0.2
    assert cfg.extra_optimizers == {
        "trunk": ExtraOptimizerConfig(modules=["body"], optim=OptimConfig(name="sgd", lr=0.003, momentum=0.9))
    }
    assert (cfg.train.batch_size, cfg.train.max_steps, cfg.train.amp) == (512, 22000, "bf16")
    assert cfg.train.grad_accum == 1  # defaults fill what the file leaves out
    assert cfg.out_dir == str(Path("runs/x").absolute())  # made absolute: a saved config works anywhere


def test_overrides_are_yaml_scalars(tmp_path: Path) -> None:
    overrides = [
        "optim.lr=3e-4",
        "train.amp=none",
        "schedule.milestones=[10, 12]",
        "task.dim=7",
        "train.shuffle=false",
        "task.name=toy_regression",
        "extra_optimizers.trunk.optim.lr=0.5",
    ]
    cfg = load_config(write(tmp_path, "run.yaml", FULL), overrides)
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.train.amp == "none" and cfg.train.shuffle is False
    assert cfg.schedule.milestones == [10, 12]
    assert cfg.task.dim == 7
    assert cfg.extra_optimizers["trunk"].optim.lr == 0.5


def test_unknown_key_in_file_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, "run.yaml", FULL.replace("  batch_size: 512", "  batchsize: 512"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path.resolve()) in str(err.value) and "train.batchsize: unknown key" in str(err.value)


def test_unknown_key_in_task_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"task\.depth: unknown key.*ToyConfig"):
        load_config(write(tmp_path, "run.yaml", FULL.replace("  dim: 6", "  depth: 6")))


def test_unknown_override_names_the_override(tmp_path: Path) -> None:
    path = write(tmp_path, "run.yaml", FULL)
    with pytest.raises(ConfigError, match=r"override 'train\.foo=1': train\.foo: unknown key"):
        load_config(path, ["train.foo=1"])
    with pytest.raises(ConfigError, match=r"override 'bogus\.x=1': bogus: unknown key"):
        load_config(path, ["bogus.x=1"])
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        load_config(path, ["train.batch_size"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.batch_size=abc", "train.batch_size: expected an integer, got 'abc'"),
        ("train.amp=fp8", r"train.amp: must be one of \['none', 'bf16', 'fp16'\]"),
        ("optim.betas=[0.9]", "optim.betas: expected 2 values"),
        ("optim.lr=fast", "optim.lr: expected a number"),
        ("train.shuffle=3", "train.shuffle: expected true/false"),
        ("train.grad_accum=3", "not divisible by grad_accum=3"),
        ("task.name=nope", "unknown task 'nope'; registered tasks:.*toy_regression"),
    ],
)
def test_bad_values_fail_with_key(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, "run.yaml", FULL), [override])


def test_needs_a_length_and_a_task(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_steps and/or train.epochs"):
        load_config(write(tmp_path, "run.yaml", FULL), ["train.max_steps=0"])
    with pytest.raises(ConfigError, match="task.name: missing"):
        load_config(write(tmp_path, "bare.yaml", "train: {max_steps: 3}\n"))


def test_includes_merge_under_the_file(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", FULL)
    (tmp_path / "sub").mkdir()
    child = write(tmp_path, "sub/child.yaml", "includes: [../base.yaml]\ntrain:\n  batch_size: 64\n")
    cfg = load_config(child)
    assert cfg.train.batch_size == 64 and cfg.train.max_steps == 22000 and cfg.optim.name == "adamax"
    write(tmp_path, "bad_base.yaml", FULL.replace("  amp: bf16", "  ampp: bf16"))
    bad_child = write(tmp_path, "bad_child.yaml", "includes: [bad_base.yaml]\n")
    with pytest.raises(ConfigError, match=r"bad_base\.yaml: train\.ampp: unknown key"):
        load_config(bad_child)


def test_saved_config_loads_back_equal(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "run.yaml", FULL), ["train.eval_every=7"])
    save_config(cfg, tmp_path / "out" / "config.yaml")
    assert load_config(tmp_path / "out" / "config.yaml") == cfg


def test_reserved_optimizer_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="reserved"):
        load_config(write(tmp_path, "run.yaml", FULL), ["extra_optimizers.main.modules=[body]"])


def test_python_built_configs_are_checked_by_train(tmp_path: Path) -> None:
    from dataclasses import replace

    from clipvil.engine import RunConfig, train

    cfg = RunConfig(task_name="toy_regression", task=OptimConfig(), out_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="task 'toy_regression' takes a ToyConfig, got OptimConfig"):
        train(replace(cfg, train=replace(cfg.train, max_steps=1)))
    with pytest.raises(ConfigError, match="max_steps and/or train.epochs"):
        train(replace(cfg, task=ToyConfig()))


def test_overriding_one_key_of_a_mapping_with_defaults_merges_it(tmp_path: Path) -> None:
    """`task.splits.test=test2015` adds a split; it used to replace the defaults (then "unknown split 'train'")."""
    from clipvil.engine.registry import get_task

    get_task("vqa")
    recipe = write(tmp_path, "vqa.yaml", "task: {name: vqa}\ntrain: {max_steps: 1}\nout_dir: runs/x\n")
    cfg = load_config(recipe, ["task.splits.test=test2015"])
    assert cfg.task.splits == {"train": "train2014", "val": "val2014", "test": "test2015"}
    in_file = write(tmp_path, "vqa2.yaml", "task: {name: vqa, splits: {vg: vg}}\ntrain: {max_steps: 1}\n")
    assert set(load_config(in_file).task.splits) == {"train", "val", "vg"}


def test_paths_are_absolute_and_a_single_value_is_a_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clipvil.engine.registry import get_task

    get_task("vqa")
    monkeypatch.chdir(tmp_path)
    recipe = write(tmp_path, "vqa.yaml", "task: {name: vqa, features: st, data_dir: d}\ntrain: {max_steps: 1}\n")
    cfg = load_config(recipe)
    assert cfg.task.features == [tmp_path / "st"] and cfg.task.data_dir == tmp_path / "d"
    save_config(cfg, tmp_path / "saved.yaml")
    monkeypatch.chdir("/")
    assert load_config(tmp_path / "saved.yaml").task.features == [tmp_path / "st"]  # from anywhere


def test_phases_and_stepping_rules_are_checked(tmp_path: Path) -> None:
    base = "task: {name: toy_regression}\ntrain: {max_steps: 4}\n"
    late = write(tmp_path, "late.yaml", base + "phases: [{name: a, start_epoch: 1}]\n")
    with pytest.raises(ConfigError, match="the first phase .* must start at epoch 0"):
        load_config(late)
    both = write(tmp_path, "both.yaml", base + "phases: [{name: a, start_epoch: 0, start_step: 0}]\n")
    with pytest.raises(ConfigError, match="exactly one of start_epoch and start_step"):
        load_config(both)
    rule = write(tmp_path, "rule.yaml", base + "schedule: {every: 2, offset: 2}\n")
    with pytest.raises(ConfigError, match="0 <= offset < every"):
        load_config(rule)
    unknown = write(tmp_path, "unknown.yaml", base + "schedule: {phases: [scst]}\n")
    with pytest.raises(ConfigError, match=r"unknown phase\(s\) \['scst'\]"):
        load_config(unknown)
    best = write(tmp_path, "best.yaml", "task: {name: toy_regression}\n"
                 "train: {max_steps: 4, eval_splits: [val], best_split: test}\n")
    with pytest.raises(ConfigError, match="'test' is not one of train.eval_splits"):
        load_config(best)
