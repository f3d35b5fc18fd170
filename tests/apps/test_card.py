"""`clipvil card`: step costs checked by hand on a toy network, the measurement's timing rule (the counted update
is never the timed one), and the card of a real VQA recipe (its head shrunk by overrides so the measured step is
quick) against facts derived by hand from the recipe and the data's sizes."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from clipvil.apps.card import _paper, make_card
from clipvil.apps.card_measure import measure_step, step_flops_and_activations

REPO = Path(__file__).resolve().parents[2]
SMALL = {"hidden": 64, "ff": 128, "heads": 2, "layers": 1, "word_dim": 16, "flat_mlp": 64, "flat_out": 128}


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def test_toy_step_costs_by_hand() -> None:
    """Batch 2 through 8 -> 16 -> ReLU -> 4, the input needing no gradient.
    Forward: 2*2*8*16 + 2*2*16*4 = 512 + 256. Backward: layer 2 grad-input 256 + grad-weight 256; layer 1
    grad-weight only, 512 (no grad-input: the input needs none). Total 1792.
    Saved for backward: the input [2, 8] (for layer 1's weight grad, 64 B) and the ReLU output [2, 16] (128 B,
    saved by the ReLU and by layer 2 — one storage); the weights are parameters, not activations."""
    model = _mlp()
    assert step_flops_and_activations(model, lambda b: model(torch.randn(b, 8)).sum(), 2) == (1792, 192)


def test_measure_step_is_per_sample_with_the_optimizer_apart() -> None:
    model = _mlp()
    cost = measure_step(model, lambda b: model(torch.randn(b, 8)).sum(), torch.optim.SGD(model.parameters(), 0.1),
                        batch=2, max_updates=3, budget_s=30.0)
    assert (cost.flops, cost.activation_bytes, cost.batch, cost.updates) == (896, 96, 2, 3)
    assert cost.seconds_per_update(64) == pytest.approx(64 * cost.seconds + cost.optimizer_seconds)
    assert cost.optimizer_state_bytes == 0  # plain SGD keeps no state


def test_adam_states_are_measured() -> None:
    """Adam keeps two fp32 moments per parameter: (8*16 + 16 + 16*4 + 4) * 2 * 4 bytes."""
    model = _mlp()
    cost = measure_step(model, lambda b: model(torch.randn(b, 8)).sum(), torch.optim.Adam(model.parameters()),
                        max_updates=1)
    assert cost.optimizer_state_bytes == (8 * 16 + 16 + 16 * 4 + 4) * 2 * 4


def test_the_counted_update_is_not_the_timed_one() -> None:
    """The old measurement timed only the FLOP-counting update when it ran past the budget; a step that is slow
    under the counters (here: it sleeps while FlopCounterMode is active) must not show in the seconds."""
    model = _mlp()

    def loss(b: int) -> torch.Tensor:
        if torch.utils._python_dispatch._get_current_dispatch_mode_stack():  # under FlopCounterMode
            time.sleep(0.5)
        return model(torch.randn(b, 8)).sum()

    cost = measure_step(model, loss, torch.optim.SGD(model.parameters(), 0.1), max_updates=3, budget_s=0.0)
    assert cost.updates == 1  # at least one clean update even with no budget left
    assert cost.counted_seconds >= 0.5 and cost.seconds < 0.25


def test_card_of_the_mcan_rn50_recipe(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from clipvil.cli import main

    monkeypatch.chdir(REPO)  # the recipe's answer vocabulary path is relative to the repository
    overrides = [f"task.model_overrides.{k}={v}" for k, v in SMALL.items()]
    assert main(["card", "vqa/mcan_rn50", *overrides, "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    facts = card["facts"]
    assert facts["grid_hw"] == [18, 31] and facts["grid_dim"] == 2048  # 600 // 32, 1000 // 32; RN50 layer4 width
    assert facts["n_answers"] == 3129 and facts["question_vocab"] == 20_000
    assert card["embedding_params"] == 20_000 * 16  # vocabulary x word_dim
    assert card["updates"] == 13 * (443_757 // 64) == 90_129  # 13 epochs of VQA v2 train2014 at batch 64
    assert (card["batch_size"], card["micro_batch"], card["seeds"]) == (64, 64, [0])
    assert card["input_bytes"] == 558 * 2048 * 2  # fp16 grid
    (phase,) = card["phases"]
    assert phase["cost"]["optimizer_state_bytes"] == card["params"] * 2 * 4  # AdamW: two fp32 moments
    # the image projection alone, 2048 -> 64 over 558 cells: forward + weight gradient (the grids need none)
    assert card["flops_per_sample"] >= 4 * 558 * 2048 * 64
    assert card["flops_per_update"] == 64 * card["flops_per_sample"]
    assert card["total_flops"] == 90_129 * card["flops_per_update"]
    assert card["gpu_hours"] == pytest.approx(card["flops_per_update"] * 90_129 / (312e12 * 0.40) / 3600)
    weights = card["params"] * 4 * 2 + phase["cost"]["optimizer_state_bytes"]
    assert card["peak_bytes_one_gpu"] == weights + 64 * phase["cost"]["activation_bytes"]
    assert card["datasets"]["train"]["questions"] == 443_757 and card["datasets"]["val"]["questions"] == 214_354
    assert card["paper"]["reproduces"] is None and "not a paper row" in card["paper"]["note"]
    assert any("20,000 words assumed" in note for note in card["assumptions"])
    assert card["device"] == "cpu" and phase["cost"]["updates"] >= 1


def test_the_markdown_card_names_every_part(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from clipvil.cli import main

    monkeypatch.chdir(REPO)
    overrides = [f"task.model_overrides.{k}={v}" for k, v in SMALL.items()]
    assert main(["card", "vqa/mcan_rn50", *overrides, "train.max_steps=10"]) == 0
    text = capsys.readouterr().out
    for part in ("**parameters**", "**phases**", "**run**: 10 updates", "**memory**", "**estimated compute**",
                 "**data**", "**seeds**", "**paper**", "**assumptions**", "clean update"):
        assert part in text


def test_paper_rows_and_refusals(tmp_path: Path) -> None:
    assert _paper("configs/vqa/movie_mcan_rn50x4.yaml")["reproduces"] == 74.01
    assert _paper("vqa/pythia_rn50x4")["reproduces"] == 68.37
    assert _paper("vqa/pythia_rn50")["reproduces"] is None and "could not be read" in _paper("vqa/pythia_rn50")["note"]
    assert "not a recipe of the paper" in _paper("clip/coco_rn50_indomain")["note"]
    with pytest.raises(ValueError, match="sets no task.feature_encoder"):
        make_card(REPO / "tests/configs/vqa_tiny.yaml", [f"out_dir={tmp_path}"])


def test_a_cuda_card_without_cuda_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    from clipvil.cli import main

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here")
    assert main(["card", "vqa/mcan_rn50", "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


@pytest.mark.parametrize(("option", "value", "rule"), [
    ("--utilisation", "2", "in (0, 1]"), ("--utilisation", "0", "in (0, 1]"), ("--utilisation", "x", "a number"),
    ("--gpu-tflops", "-1", "> 0"), ("--gpu-tflops", "0", "> 0"), ("--device", "tpu", "cpu, cuda or cuda:N"),
    ("--device", "cuda:x", "cpu, cuda or cuda:N"),
])
def test_bad_options_are_one_line_errors(option: str, value: str, rule: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from clipvil.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["card", "vqa/mcan_rn50", option, value])
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert option in last and rule in last and "Traceback" not in last


def test_known_gpus_set_the_peak_and_tflops_override() -> None:
    from clipvil.apps.card_parts import known_gpu

    assert (known_gpu("H100").peak_flops, known_gpu("h200").name, known_gpu("A100").peak_flops) == (989e12, "H200",
                                                                                                   312e12)
    v100 = known_gpu("V100", utilisation=0.5)
    assert (v100.peak_flops, v100.precision, v100.utilisation) == (125e12, "fp16", 0.5)
    assert known_gpu("H100", 500.0).peak_flops == 500e12  # given explicitly: overrides the table
    assert known_gpu("MI300X", 1307.4).peak_flops == pytest.approx(1307.4e12)  # any name with a peak
    with pytest.raises(ValueError, match=r"--gpu MI300X: .*known: A100, H100, H200, V100"):
        known_gpu("MI300X")


def test_an_unknown_gpu_without_a_peak_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    from clipvil.cli import main

    assert main(["card", "vqa/mcan_rn50", "--gpu", "B9000"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--gpu B9000" in err and "A100, H100, H200, V100" in err


def test_an_h100_card_is_named_as_given_and_quiet(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """--gpu H100 uses its 989 TFLOP/s; the title and `recipe` are the name given (not the packaged file's
    absolute path); no "RANDOM weights" warning while the card builds the tower for its shapes."""
    from clipvil.cli import main

    monkeypatch.chdir(REPO)
    overrides = [f"task.model_overrides.{k}={v}" for k, v in SMALL.items()]
    with caplog.at_level(logging.WARNING, logger="clipvil.encoders.registry"):
        assert main(["card", "vqa/mcan_rn50", *overrides, "--gpu", "H100", "--json"]) == 0
        card = json.loads(capsys.readouterr().out)
        assert main(["card", "vqa/mcan_rn50", *overrides, "train.max_steps=10", "--gpu", "H100"]) == 0
        text = capsys.readouterr().out
    assert not [r for r in caplog.records if "RANDOM weights" in r.getMessage()]
    assert card["gpu"]["peak_flops"] == 989e12 and card["gpu"]["name"] == "H100"
    assert card["gpu_hours"] == pytest.approx(card["total_flops"] / (989e12 * 0.40) / 3600)
    assert card["recipe"] == "vqa/mcan_rn50" and card["config_file"].endswith("vqa/mcan_rn50.yaml")
    assert text.splitlines()[0] == "### vqa/mcan_rn50"
    assert "GPU-hours on H100 at 40%" in text and "H100 989 TFLOP/s dense bf16" in text


def test_grid_shape_silences_only_while_it_builds(caplog: pytest.LogCaptureFixture) -> None:
    from clipvil.apps.card_parts import grid_shape
    from clipvil.encoders import build_encoder

    with caplog.at_level(logging.WARNING, logger="clipvil.encoders.registry"):
        assert grid_shape("RN50", "caption")[:2] == ((14, 14), 2048)
        assert not [r for r in caplog.records if "RANDOM weights" in r.getMessage()]
        with torch.device("meta"):
            build_encoder("RN50")  # outside a card the warning stays (and the logger's level is restored)
    assert [r for r in caplog.records if "RANDOM weights" in r.getMessage()]


def test_a_study_config_is_sent_to_clipvil_study(capsys: pytest.CaptureFixture[str]) -> None:
    from clipvil.cli import main

    study = REPO / "configs/study/navworld_vln.yaml"
    assert main(["card", str(study)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a study config" in err and f"clipvil study {study}" in err
