"""Learning-rate schedules: the paper's Pythia and MCAN recipes, Noam and linear, through torch's LambdaLR.

Expected values are written from the recipes' own definitions (MMF's pythia VQA2 defaults: Adamax
lr 0.01, warm-up 1000 updates from factor 0.2, x0.1 at 15000/18000/20000/21000, 22000 updates;
mcan-vqa: Adam lr 1e-4, lr x 1/4, 2/4, 3/4 in epochs 1-3, x0.2 from epoch index 10 and 12, 13 epochs).
"""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from clipvil.engine.config import ScheduleConfig
from clipvil.engine.config_io import build_dataclass
from clipvil.engine.optim import build_scheduler, schedule_factor

PYTHIA = """
name: step
unit: step
warmup: 1000
warmup_mode: linear
warmup_factor: 0.2
milestones: [15000, 18000, 20000, 21000]
decay: 0.1
"""

MCAN = """
name: step
unit: epoch
warmup: 3
warmup_mode: staircase
milestones: [10, 12]
decay: 0.2
"""


def parse(text: str) -> ScheduleConfig:
    return build_dataclass(ScheduleConfig, yaml.safe_load(text), "<schedule preset>")


def lrs_of_updates(
    cfg: ScheduleConfig, base_lr: float, n: int, steps_per_epoch: int, total: int
) -> list[float]:
    """The lr each of the first n updates runs at, read from a real optimizer + LambdaLR."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    sched = build_scheduler(opt, cfg, steps_per_epoch, total)
    seen = []
    for _ in range(n):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return seen


def test_pythia_vqa2_schedule() -> None:
    cfg = parse(PYTHIA)
    lrs = lrs_of_updates(cfg, 0.01, 22000, steps_per_epoch=1000, total=22000)
    expected = {
        0: 0.01 * 0.2,
        500: 0.01 * (0.2 + 0.8 * 0.5),  # halfway up the linear ramp
        999: 0.01 * (0.2 + 0.8 * 999 / 1000),
        1000: 0.01,
        14999: 0.01,
        15000: 0.001,
        17999: 0.001,
        18000: 1e-4,
        20000: 1e-5,
        21000: 1e-6,
        21999: 1e-6,
    }
    for step, lr in expected.items():
        assert lrs[step] == pytest.approx(lr, rel=1e-9), step


def test_mcan_schedule_by_epoch() -> None:
    cfg = parse(MCAN)
    spe = 100  # e.g. 6400 questions / batch 64
    lrs = lrs_of_updates(cfg, 1e-4, 13 * spe, steps_per_epoch=spe, total=13 * spe)
    per_epoch = [1e-4 / 4, 1e-4 * 2 / 4, 1e-4 * 3 / 4] + [1e-4] * 7 + [2e-5, 2e-5, 4e-6]
    for epoch, lr in enumerate(per_epoch):
        for step in (epoch * spe, epoch * spe + spe - 1):  # first and last update of the epoch
            assert lrs[step] == pytest.approx(lr, rel=1e-9), (epoch, step)


def test_noam_schedule() -> None:
    cfg = ScheduleConfig(name="noam", warmup=20000, d_model=512)

    def lr(step: int) -> float:
        return schedule_factor(cfg, step, 1000, 10**6)

    assert lr(0) == pytest.approx(512**-0.5 * 20000**-1.5)
    assert lr(19999) == pytest.approx(512**-0.5 * 20000**-0.5)  # the peak at n = warmup
    assert lr(79999) == pytest.approx(512**-0.5 * 80000**-0.5)
    assert max(lr(s) for s in range(0, 60000, 500)) <= lr(19999)


def test_linear_schedule_decays_to_zero() -> None:
    cfg = ScheduleConfig(name="linear", warmup=10)
    lrs = lrs_of_updates(cfg, 1.0, 110, steps_per_epoch=10, total=110)
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.5) and lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.5) and lrs[109] == pytest.approx(1 / 100)
    assert schedule_factor(cfg, 110, 10, 110) == 0.0


def test_constant_by_default() -> None:
    cfg = ScheduleConfig()
    assert {schedule_factor(cfg, s, 7, 100) for s in range(100)} == {1.0}
    assert math.isclose(schedule_factor(ScheduleConfig(milestones=[3]), 3, 7, 100), 0.1)


def test_cosine_warms_up_then_follows_half_a_cosine_to_zero() -> None:
    import math

    from clipvil.engine.config import ScheduleConfig
    from clipvil.engine.optim import schedule_factor

    cfg = ScheduleConfig(name="cosine", warmup=10)
    assert schedule_factor(cfg, 0, 100, 110) == 0.0
    assert schedule_factor(cfg, 5, 100, 110) == 0.5  # linear warm-up from 0
    assert schedule_factor(cfg, 10, 100, 110) == 1.0
    assert schedule_factor(cfg, 60, 100, 110) == pytest.approx(0.5)  # half-way through the decay
    assert schedule_factor(cfg, 35, 100, 110) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    assert schedule_factor(cfg, 110, 100, 110) == pytest.approx(0.0, abs=1e-12)
