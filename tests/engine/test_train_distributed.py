"""DDP through torchrun: 2 CPU processes (gloo) reproduce 1 process with the same global batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_toy import toy_config

from clipvil.engine import save_config, train
from clipvil.engine.checkpoint import last_path, load_checkpoint
from clipvil.engine.logs import read_jsonl

HERE = Path(__file__).resolve().parent
ARGS = [
    "task.hidden=8",
    "optim.name=adam",
    "optim.lr=0.01",
    "train.batch_size=8",
    "train.max_steps=6",
    "train.checkpoint_every=3",
    "train.eval_every=3",
    "train.clip_grad_norm=0.5",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_processes_match_one(tmp_path: Path) -> None:
    save_config(toy_config(tmp_path / "ddp", *ARGS, "train.grad_accum=2"), tmp_path / "ddp.yaml")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        str(HERE / "run_train_toy.py"),
        str(tmp_path / "ddp.yaml"),
    ]
    done = subprocess.run(
        cmd,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    train(toy_config(tmp_path / "single", *ARGS))

    ddp_log, single_log = (read_jsonl(tmp_path / d / "logs" / "train.jsonl") for d in ("ddp", "single"))
    assert [r["step"] for r in ddp_log] == [r["step"] for r in single_log] == [1, 2, 3, 4, 5, 6]
    for key in ("loss", "mae", "grad_norm"):
        assert [r[key] for r in ddp_log] == pytest.approx([r[key] for r in single_log], rel=1e-5, abs=1e-6)
    ddp_ckpt = load_checkpoint(last_path(tmp_path / "ddp"))
    assert ddp_ckpt["world_size"] == 2 and len(ddp_ckpt["rng"]) == 2  # every rank's RNG state is kept
    single_weights = load_checkpoint(last_path(tmp_path / "single"))["model"]
    for key, value in single_weights.items():
        torch.testing.assert_close(ddp_ckpt["model"][key], value, rtol=0, atol=1e-5)
    ddp_eval, single_eval = (read_jsonl(tmp_path / d / "logs" / "eval.jsonl") for d in ("ddp", "single"))
    assert [e["neg_mse"] for e in ddp_eval] == pytest.approx([e["neg_mse"] for e in single_eval], rel=1e-5)
