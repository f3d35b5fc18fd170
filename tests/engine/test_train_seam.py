"""The engine's seam: a task module whose step calls the model many times (DDP), phases switched mid-run and
resumed after a kill, optimizers on their own schedules, bucketed batches, several evaluation splits, a
metric where lower is better, init_from with a key map, and a refused resume that keeps config.yaml."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from seam_toy import seam_config
from test_train_distributed import free_port

from clipvil.engine import save_config, train
from clipvil.engine.checkpoint import CheckpointMismatchError, best_path, last_path, load_checkpoint
from clipvil.engine.logs import read_jsonl

HERE = Path(__file__).resolve().parent
PHASES = {"phases": [{"name": "mse", "start_step": 0},
                     {"name": "l1", "start_epoch": 1, "optim": {"name": "sgd", "lr": 0.02}}]}


def _log(run: Path, name: str = "train.jsonl") -> list[dict]:
    return read_jsonl(run / "logs" / name)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(last_path(run))["model"]


def _torchrun(config: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", str(HERE / "run_train_toy.py"), str(config)]
    return subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=240, check=False)


def test_a_rollout_task_under_two_process_ddp_matches_one_process(tmp_path: Path) -> None:
    """forward() applies the model 3 times: one DDP forward per micro-batch, gradients equal to 1 process."""
    args = ["task.calls=3", "optim.name=adam", "optim.lr=0.01", "train.grad_accum=2", "train.max_steps=6"]
    save_config(seam_config(tmp_path / "ddp", *args), tmp_path / "ddp.yaml")
    done = _torchrun(tmp_path / "ddp.yaml")
    assert done.returncode == 0, done.stderr[-4000:]
    train(seam_config(tmp_path / "one", *args))
    assert [r["loss"] for r in _log(tmp_path / "ddp")] == pytest.approx([r["loss"] for r in _log(tmp_path / "one")],
                                                                        rel=1e-5)
    a, b = _weights(tmp_path / "ddp"), _weights(tmp_path / "one")
    for key in b:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5)


def test_phase_switch_at_an_epoch_with_a_fresh_optimizer(tmp_path: Path) -> None:
    result = train(seam_config(tmp_path, extra=PHASES))  # 48 items / batch 8 = 6 updates per epoch
    log = _log(tmp_path)
    assert [r["phase"] for r in log] == ["mse"] * 6 + ["l1"] * 6
    assert [r["l1"] for r in log] == [0.0] * 6 + [1.0] * 6  # the task was told its phase
    assert [r["lr"] for r in log] == [0.05] * 6 + [0.02] * 6  # the l1 phase's own optimizer settings
    assert load_checkpoint(last_path(tmp_path))["train_state"]["phase"] == "l1" and result.step == 12


def test_killed_after_the_phase_switch_resumes_to_the_same_losses(tmp_path: Path) -> None:
    killed = tmp_path / "killed"
    save_config(seam_config(killed, "task.sleep=0.15", "train.checkpoint_every=2", extra=PHASES),
                tmp_path / "slow.yaml")
    proc = subprocess.Popen([sys.executable, str(HERE / "run_train_toy.py"), str(tmp_path / "slow.yaml")],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while not ((killed / "logs/train.jsonl").is_file() and len(_log(killed)) >= 9):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the training subprocess made no progress"
            time.sleep(0.02)
        proc.kill()
    finally:
        proc.kill()
        proc.wait()
    saved = load_checkpoint(last_path(killed))["train_state"]
    assert saved["phase"] == "l1" and 8 <= saved["step"] < 12  # killed inside the second phase
    train(seam_config(killed, "train.checkpoint_every=2", extra=PHASES))
    train(seam_config(tmp_path / "reference", "train.checkpoint_every=2", extra=PHASES))
    assert [r["loss"] for r in _log(killed)] == [r["loss"] for r in _log(tmp_path / "reference")]
    a, b = _weights(killed), _weights(tmp_path / "reference")
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_resume_exactly_at_the_switch(tmp_path: Path) -> None:
    """Stopped after the last update of phase 1 (its optimizer in last.pt), continued into phase 2."""
    train(seam_config(tmp_path / "split", "train.max_steps=6", extra=PHASES))
    train(seam_config(tmp_path / "split", extra=PHASES))
    train(seam_config(tmp_path / "whole", extra=PHASES))
    assert [r["loss"] for r in _log(tmp_path / "split")] == [r["loss"] for r in _log(tmp_path / "whole")]


def test_two_optimizers_alternate_and_one_steps_only_in_its_phase(tmp_path: Path) -> None:
    extra = {"extra_optimizers": {"speaker": {"modules": ["speaker"], "optim": {"name": "sgd", "lr": 0.05},
                                              "schedule": {"every": 2, "offset": 1}}},
             "schedule": {"every": 2, "offset": 0}}
    snapshots = []
    for steps in range(1, 5):
        train(seam_config(tmp_path, "task.two_models=true", f"train.max_steps={steps}",
                          "train.checkpoint_every=1", extra=extra))
        snapshots.append(_weights(tmp_path))
    first = load_checkpoint(last_path(tmp_path))  # noqa: F841  (the run is whole)
    for i in range(1, 4):
        before, after = snapshots[i - 1], snapshots[i]
        moved = {part for part in ("follower", "speaker")
                 if not torch.equal(before[f"{part}.head.weight"], after[f"{part}.head.weight"])}
        assert moved == ({"speaker"} if i % 2 == 1 else {"follower"}), f"update {i}"
    assert [r["speaker_turn"] for r in _log(tmp_path)] == [0.0, 1.0, 0.0, 1.0]

    only_l1 = {"extra_optimizers": {"speaker": {"modules": ["speaker"], "optim": {"name": "sgd", "lr": 0.05},
                                                "schedule": {"phases": ["l1"]}}}, **PHASES}
    train(seam_config(tmp_path / "phased", "task.two_models=true", "train.max_steps=6", extra=only_l1))
    six = _weights(tmp_path / "phased")
    train(seam_config(tmp_path / "phased", "task.two_models=true", "train.max_steps=7", extra=only_l1))
    seven = _weights(tmp_path / "phased")
    fresh = seam_config(tmp_path / "fresh", "task.two_models=true", "train.max_steps=1", extra=only_l1)
    train(fresh)
    untouched = _weights(tmp_path / "fresh")
    assert torch.equal(untouched["speaker.head.weight"], six["speaker.head.weight"])  # 6 updates of phase mse
    assert not torch.equal(six["speaker.head.weight"], seven["speaker.head.weight"])  # first l1 update


def test_bucketed_batches_are_pure_and_resume_mid_epoch(tmp_path: Path) -> None:
    train(seam_config(tmp_path / "whole", "task.buckets=2", "train.max_steps=9"))
    train(seam_config(tmp_path / "split", "task.buckets=2", "train.max_steps=4"))
    train(seam_config(tmp_path / "split", "task.buckets=2", "train.max_steps=9"))
    whole = _log(tmp_path / "whole")
    assert all(r["pure"] == 1.0 for r in whole)
    assert [r["loss"] for r in _log(tmp_path / "split")] == [r["loss"] for r in whole]


def test_two_eval_splits_are_logged_and_best_follows_the_named_one(tmp_path: Path) -> None:
    result = train(seam_config(tmp_path, "train.eval_every=2", "train.eval_splits=[val_a, val_b]",
                               "train.best_split=val_b", "optim.lr=0.02"))
    evals = _log(tmp_path, "eval.jsonl")
    assert [e["split"] for e in evals] == ["val_a", "val_b"] * 6
    assert all(e["split_seen"] == e["split"] for e in evals)  # evaluate() is told which split it scores
    b_records = [e for e in evals if e["split"] == "val_b"]
    best = min(b_records, key=lambda e: e["mse"])  # lower is better for this task
    assert (result.best_value, result.best_step) == (best["mse"], best["step"])
    assert load_checkpoint(best_path(tmp_path))["train_state"]["step"] == best["step"]
    assert set(result.last_eval) == {"val_a", "val_b"}


def test_init_from_with_a_key_map(tmp_path: Path) -> None:
    train(seam_config(tmp_path / "pre", "train.max_steps=2"))
    pre = _weights(tmp_path / "pre")
    cfg = seam_config(tmp_path / "fine", "task.two_models=true", "train.max_steps=1", "optim.lr=0.0",
                      f"train.init_from={last_path(tmp_path / 'pre')}", "train.init_strict=false",
                      "train.init_key_map={step.: follower.step., head.: follower.head.}")
    train(cfg)
    fine = _weights(tmp_path / "fine")
    for key in ("step.weight", "step.bias", "head.weight", "head.bias"):
        assert torch.equal(fine[f"follower.{key}"], pre[key])


def test_a_refused_resume_leaves_config_yaml_as_it_was(tmp_path: Path) -> None:
    train(seam_config(tmp_path, "train.max_steps=2"))
    before = (tmp_path / "config.yaml").read_bytes()
    with pytest.raises(CheckpointMismatchError, match="last.pt"):
        train(seam_config(tmp_path, "train.max_steps=4", "task.dim=5"))
    assert (tmp_path / "config.yaml").read_bytes() == before


def test_a_recipe_composing_the_public_blocks_equals_train(tmp_path: Path) -> None:
    """docs/training.md's own-loop recipe: setup_run + next_update + update + after_update."""
    from clipvil.common.distributed import init_distributed
    from clipvil.engine.loop import after_update, next_update, setup_run, update

    cfg = seam_config(tmp_path / "own", extra=PHASES)
    run = setup_run(cfg, init_distributed("cpu"))
    with run.logger:
        while run.state.step < run.total_steps:
            run.sampler.set_position(run.state.epoch, run.state.step_in_epoch)
            for batch in run.loader:
                progress = next_update(run)
                after_update(run, update(run, [batch], progress))
                if run.state.step_in_epoch == 0 or run.state.step == run.total_steps:
                    break
    train(seam_config(tmp_path / "engine", extra=PHASES))
    assert [r["loss"] for r in _log(tmp_path / "own")] == [r["loss"] for r in _log(tmp_path / "engine")]
