"""A run killed with SIGKILL after writing a checkpoint resumes to the same losses and weights."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from train_toy import toy_config

from clipvil.engine import save_config, train
from clipvil.engine.checkpoint import last_path, load_checkpoint
from clipvil.engine.logs import read_jsonl

HERE = Path(__file__).resolve().parent
ARGS = [
    "task.hidden=8",
    "task.dropout=0.3",
    "optim.name=adamw",
    "optim.lr=0.02",
    "schedule.warmup=4",
    "schedule.milestones=[20]",
    "train.max_steps=30",
    "train.log_every=3",
    "train.checkpoint_every=4",
    "train.eval_every=10",
]


def test_kill_minus_nine_then_resume(tmp_path: Path) -> None:
    killed = tmp_path / "killed"
    save_config(toy_config(killed, *ARGS, "task.sleep=0.15"), tmp_path / "slow.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "run_train_toy.py"), str(tmp_path / "slow.yaml")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    log = killed / "logs" / "train.jsonl"
    deadline = time.monotonic() + 120
    try:
        while not (log.is_file() and len(log.read_text().splitlines()) >= 4):  # 12+ updates done
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the training subprocess made no progress"
            time.sleep(0.02)
        proc.kill()  # SIGKILL: no cleanup, no final checkpoint
    finally:
        proc.kill()
        proc.wait()
    step_at_kill = load_checkpoint(last_path(killed))["train_state"]["step"]
    assert 8 <= step_at_kill < 30 and len(read_jsonl(log)) * 3 < 30  # killed mid-run, after a checkpoint

    resumed = train(toy_config(killed, *ARGS))  # same out_dir: continues from last.pt
    reference = train(toy_config(tmp_path / "reference", *ARGS))
    assert resumed.step == reference.step == 30
    assert read_jsonl(log) and [r["loss"] for r in read_jsonl(log)] == [
        r["loss"] for r in read_jsonl(tmp_path / "reference" / "logs" / "train.jsonl")
    ]
    a, b = (
        load_checkpoint(last_path(killed))["model"],
        load_checkpoint(last_path(tmp_path / "reference"))["model"],
    )
    assert all(torch.equal(a[k], b[k]) for k in b)
