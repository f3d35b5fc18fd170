"""Optimizers from config, weight-decay groups, and parameters split over several optimizers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import train_toy  # noqa: F401
from train_toy import ToyNet, toy_config

from clipvil.engine.config import OptimConfig
from clipvil.engine.optim import MAIN, build_optimizer, build_optimizers, partition_parameters
from clipvil.engine.phases import plan_phases


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("adamw", torch.optim.AdamW),
        ("adam", torch.optim.Adam),
        ("adamax", torch.optim.Adamax),
        ("sgd", torch.optim.SGD),
    ],
)
def test_optimizer_classes_and_settings(name: str, cls: type) -> None:
    cfg = OptimConfig(name=name, lr=0.02, betas=(0.8, 0.98), eps=1e-9, weight_decay=0.01, momentum=0.5)
    opt = build_optimizer(list(ToyNet(3, 5, 0.0).parameters()), cfg)
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (0.02, 0.01)
    if name == "sgd":
        assert group["momentum"] == 0.5
    else:
        assert tuple(group["betas"]) == (0.8, 0.98) and group["eps"] == 1e-9


def test_no_decay_on_1d_parameters() -> None:
    model = ToyNet(3, 5, 0.0)
    opt = build_optimizer(list(model.parameters()), OptimConfig(weight_decay=0.1, decay_1d=False))
    decay, no_decay = opt.param_groups
    assert {p.ndim for p in decay["params"]} == {2} and decay["weight_decay"] == 0.1
    assert {p.ndim for p in no_decay["params"]} == {1} and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_extra_optimizer_owns_its_modules(tmp_path: Path) -> None:
    cfg = toy_config(
        tmp_path,
        "task.hidden=5",
        "extra_optimizers.trunk.modules=[body]",
        "extra_optimizers.trunk.optim.name=sgd",
        "extra_optimizers.trunk.optim.lr=0.003",
        "optim.name=adamw",
        "optim.lr=1e-4",
    )
    model = ToyNet(4, 5, 0.0)
    model.head.bias.requires_grad_(False)  # frozen parameters belong to no optimizer
    parts = partition_parameters(model, cfg)
    assert [id(p) for p in parts["trunk"]] == [id(p) for p in model.body.parameters()]
    assert [id(p) for p in parts[MAIN]] == [id(model.head.weight)]
    optimizers, schedulers = build_optimizers(model, cfg, 8, plan_phases(cfg, 8, 10), "train")
    assert list(optimizers) == [MAIN, "trunk"] and list(schedulers) == [MAIN, "trunk"]
    assert type(optimizers["trunk"]) is torch.optim.SGD and optimizers["trunk"].param_groups[0]["lr"] == 0.003
    assert type(optimizers[MAIN]) is torch.optim.AdamW


def test_bad_partitions_fail_clearly(tmp_path: Path) -> None:
    model = ToyNet(4, 5, 0.0)
    unknown = toy_config(tmp_path, "extra_optimizers.trunk.modules=[backbone]")
    with pytest.raises(ValueError, match="no sub-module 'backbone' in ToyNet.*children: body, head"):
        partition_parameters(model, unknown)
    twice = toy_config(tmp_path, "extra_optimizers.a.modules=[body]", "extra_optimizers.b.modules=[body.0]")
    with pytest.raises(ValueError, match="already owned by optimizer 'a'"):
        partition_parameters(model, twice)
    everything = toy_config(tmp_path, "extra_optimizers.a.modules=[body, head]")
    with pytest.raises(ValueError, match="no trainable parameters are left for the main optimizer"):
        partition_parameters(model, everything)
