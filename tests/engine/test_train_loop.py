"""The training loop on the toy task: golden losses, accumulation, resume, NaN guard, AMP, logs, evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import train_toy
from train_toy import ToyTask, toy_config

from clipvil.engine import CheckpointMismatchError, NonFiniteLossError, evaluate, train
from clipvil.engine.checkpoint import best_path, last_path, load_checkpoint
from clipvil.engine.logs import read_jsonl


def losses(out_dir: Path) -> list[float]:
    return [r["loss"] for r in read_jsonl(out_dir / "logs" / "train.jsonl")]


def final_weights(out_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(last_path(out_dir))["model"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        torch.testing.assert_close(value, b[key], rtol=0, atol=atol, msg=key)


def test_golden_first_losses_match_hand_written_sgd(tmp_path: Path) -> None:
    cfg = toy_config(tmp_path, "train.shuffle=false", "train.max_steps=4", "train.seed=5")
    train(cfg)
    # The same run by hand: model built right after seeding with train.seed, data in order, plain SGD
    # with the closed-form gradient of the mean squared error of a linear model.
    torch.manual_seed(5)
    model = ToyTask(cfg.task).model
    w, b = model.head.weight.detach().clone()[0], model.head.bias.detach().clone()[0]  # [D], []
    x, y = train_toy.make_split(cfg.task, "train")  # [N, D], [N]
    expected = []
    for step in range(4):
        xb, yb = x[8 * step : 8 * step + 8], y[8 * step : 8 * step + 8]  # [8, D], [8]
        residual = xb @ w + b - yb  # [8]
        expected.append(float((residual**2).mean()))
        w = w - 0.1 * 2 / 8 * (residual @ xb)  # [D]
        b = b - 0.1 * 2 / 8 * residual.sum()
    assert losses(tmp_path) == pytest.approx(expected, rel=1e-5)
    assert_same_weights(final_weights(tmp_path), {"head.weight": w[None], "head.bias": b[None]}, atol=1e-6)


def test_gradient_accumulation_matches_one_big_batch(tmp_path: Path) -> None:
    common = ["task.hidden=6", "optim.name=adamw", "optim.lr=0.01", "train.max_steps=6"]
    train(toy_config(tmp_path / "a1", *common, "train.grad_accum=1"))
    train(toy_config(tmp_path / "a2", *common, "train.grad_accum=2"))
    train(toy_config(tmp_path / "a4", *common, "train.grad_accum=4"))
    for other in ("a2", "a4"):
        assert losses(tmp_path / other) == pytest.approx(losses(tmp_path / "a1"), rel=1e-5, abs=1e-7)
        assert_same_weights(final_weights(tmp_path / other), final_weights(tmp_path / "a1"), atol=1e-6)


RICH = [  # dropout (RNG), shuffling, warm-up + decay, two optimizers, log windows across checkpoints
    "task.hidden=8",
    "task.dropout=0.3",
    "optim.name=adamw",
    "optim.lr=0.02",
    "schedule.warmup=5",
    "schedule.warmup_factor=0.1",
    "schedule.milestones=[9]",
    "extra_optimizers.trunk.modules=[body]",
    "extra_optimizers.trunk.optim.name=sgd",
    "extra_optimizers.trunk.optim.momentum=0.9",
    "train.log_every=3",
    "train.checkpoint_every=4",
    "train.eval_every=5",
    "train.clip_grad_norm=1.0",
]


def test_stop_and_continue_equals_one_run(tmp_path: Path) -> None:
    whole = train(toy_config(tmp_path / "whole", *RICH, "train.max_steps=18"))
    train(toy_config(tmp_path / "split", *RICH, "train.max_steps=7"))  # ends mid-epoch, mid-window
    again = train(toy_config(tmp_path / "split", *RICH, "train.max_steps=18"))
    assert losses(tmp_path / "split") == losses(tmp_path / "whole") and len(losses(tmp_path / "whole")) == 6
    assert_same_weights(final_weights(tmp_path / "split"), final_weights(tmp_path / "whole"))
    assert again.step == whole.step == 18
    evals = {
        name: {e["step"]: e["neg_mse"] for e in read_jsonl(tmp_path / name / "logs" / "eval.jsonl")}
        for name in ("whole", "split")
    }
    assert sorted(evals["split"]) == [5, 7, 10, 15, 18]  # every 5 updates, the end, + 7: end of leg 1
    assert all(evals["split"][step] == value for step, value in evals["whole"].items())
    lr_records = read_jsonl(tmp_path / "whole" / "logs" / "train.jsonl")
    assert lr_records[0]["lr"] == pytest.approx(0.02 * (0.1 + 0.9 * 2 / 5)) and "lr/trunk" in lr_records[0]
    assert train(toy_config(tmp_path / "split", *RICH, "train.max_steps=18")).step == 18  # finished: no-op


def test_nan_loss_stops_with_ids_and_keeps_last_checkpoint(tmp_path: Path) -> None:
    cfg = toy_config(tmp_path, "train.shuffle=false", "task.nan_id=13", "train.checkpoint_every=1")
    with pytest.raises(
        NonFiniteLossError,
        match=r"non-finite loss nan at update 2 .*rank 0: \[\[8, 9, 10, 11, "
        r"12, 13, 14, 15\]\]; last good checkpoint: .*last\.pt",
    ):
        train(cfg)
    state = load_checkpoint(last_path(tmp_path))
    assert state["train_state"]["step"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    assert len(losses(tmp_path)) == 1


def test_non_finite_weights_are_never_checkpointed(tmp_path: Path) -> None:
    cfg = toy_config(tmp_path, "train.shuffle=false", "task.nan_grad_id=20", "train.checkpoint_every=1")
    with pytest.raises(NonFiniteLossError, match=r"head\.weight is not finite after update 3; refusing"):
        train(cfg)
    state = load_checkpoint(last_path(tmp_path))
    assert state["train_state"]["step"] == 2 and torch.isfinite(state["model"]["head.weight"]).all()


def test_bf16_autocast_on_cpu(tmp_path: Path) -> None:
    train(toy_config(tmp_path / "fp32", "task.hidden=6", "train.max_steps=5"))
    train(toy_config(tmp_path / "bf16", "task.hidden=6", "train.max_steps=5", "train.amp=bf16"))
    records = read_jsonl(tmp_path / "bf16" / "logs" / "train.jsonl")
    assert {r["pred_bits"] for r in records} == {16.0}  # the model really ran in bf16
    assert losses(tmp_path / "bf16") == pytest.approx(losses(tmp_path / "fp32"), rel=5e-2)
    assert losses(tmp_path / "bf16") != losses(tmp_path / "fp32")


def test_fp16_with_grad_scaler_resumes(tmp_path: Path) -> None:
    args = ["task.hidden=6", "train.amp=fp16", "train.checkpoint_every=2"]
    train(toy_config(tmp_path / "whole", *args, "train.max_steps=6"))
    train(toy_config(tmp_path / "split", *args, "train.max_steps=3"))
    train(toy_config(tmp_path / "split", *args, "train.max_steps=6"))
    assert load_checkpoint(last_path(tmp_path / "whole"))["scaler"]["scale"] > 0
    assert losses(tmp_path / "split") == losses(tmp_path / "whole")


def test_logs_evaluation_and_checkpoints(tmp_path: Path) -> None:
    cfg = toy_config(
        tmp_path,
        "train.max_steps=16",
        "train.log_every=4",
        "train.eval_every=6",
        "train.eval_each_epoch=true",
        "train.tensorboard=true",
        "train.progress=true",
    )
    result = train(cfg)
    records = read_jsonl(tmp_path / "logs" / "train.jsonl")
    assert [r["step"] for r in records] == [4, 8, 12, 16]
    assert {"step", "epoch", "loss", "lr", "samples_per_sec", "mae", "pred_bits"} <= set(records[0])
    assert records[1]["epoch"] == 1.0 and records[0]["samples_per_sec"] > 0
    evals = read_jsonl(tmp_path / "logs" / "eval.jsonl")
    assert [e["step"] for e in evals] == [6, 8, 12, 16]  # every 6 updates + epoch ends (8 updates each)
    best = max(evals, key=lambda e: e["neg_mse"])
    assert (result.best_value, result.best_step) == (best["neg_mse"], best["step"])
    assert load_checkpoint(best_path(tmp_path))["train_state"]["step"] == best["step"]
    assert len(json.loads((tmp_path / "eval" / "step0000006" / "val" / "results.json").read_text())) == 24
    assert list((tmp_path / "logs" / "tb").glob("events.out.tfevents.*"))
    assert (tmp_path / "config.yaml").is_file()
    metrics = evaluate(cfg, best_path(tmp_path), "val", tmp_path / "re-eval")
    assert metrics["neg_mse"] == pytest.approx(best["neg_mse"], rel=1e-6)
    assert json.loads((tmp_path / "re-eval" / "metrics.json").read_text())["count"] == 24
    assert (tmp_path / "re-eval" / "results.json").is_file()


def test_another_architecture_fails_naming_the_file(tmp_path: Path) -> None:
    train(toy_config(tmp_path, "train.max_steps=2"))
    with pytest.raises(CheckpointMismatchError, match=r"last\.pt: checkpoint does not fit ToyNet: .*missing"):
        train(toy_config(tmp_path, "train.max_steps=4", "task.hidden=3"))
    with pytest.raises(CheckpointMismatchError, match=r"last\.pt: .*head\.weight: file \(1, 4\) vs model \(1, 5\)"):
        evaluate(toy_config(tmp_path, "task.dim=5"), last_path(tmp_path), "val")


def test_init_from_loads_weights_only(tmp_path: Path) -> None:
    train(toy_config(tmp_path / "pre", "train.max_steps=3"))
    cfg = toy_config(
        tmp_path / "fine",
        "train.max_steps=1",
        "train.checkpoint_every=1",
        "optim.lr=0.0",
        f"train.init_from={last_path(tmp_path / 'pre')}",
    )
    result = train(cfg)
    assert result.step == 1  # a fresh run: counters and optimizer start over
    assert_same_weights(final_weights(tmp_path / "fine"), final_weights(tmp_path / "pre"))


def test_resume_with_dataloader_workers(tmp_path: Path) -> None:
    args = ["task.hidden=8", "task.dropout=0.3", "train.num_workers=2"]
    train(toy_config(tmp_path / "whole", *args, "train.max_steps=20"))
    train(toy_config(tmp_path / "split", *args, "train.max_steps=11"))
    train(toy_config(tmp_path / "split", *args, "train.max_steps=20"))
    assert losses(tmp_path / "split") == losses(tmp_path / "whole") and len(losses(tmp_path / "whole")) == 20
