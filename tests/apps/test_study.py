"""`clipvil study`: encoders x seeds as resumable cells (a pre-trained encoder, a plugin), the report, and a
study killed inside a cell that continues to the numbers of an uninterrupted one."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from clipvil.apps.study import load_study, run_study
from clipvil.engine.checkpoint import load_checkpoint
from clipvil.features.store import FeatureStore

REPO = Path(__file__).resolve().parents[2]
CELL = ["train.max_steps=4", "train.batch_size=16", "train.tensorboard=false", "train.checkpoint_every=1",
        "train.log_every=1",
        "task.model_overrides.hidden=32", "task.model_overrides.ff=64", "task.model_overrides.flat_mlp=32",
        "task.model_overrides.flat_out=64", "task.model_overrides.layers=1"]
PRETRAIN = ["train.max_steps=2", "train.batch_size=8", "train.eval_splits=[]", "train.tensorboard=false"]


def _study(tmp_path: Path, encoders: list[dict], seeds: list[int], out: str = "out", steps: int = 4) -> Path:
    cfg = {"out": str(tmp_path / out), "world": {"images": 30, "seed": 2}, "adapter": "vqa",
           "recipe": str(REPO / "configs/demo/mcan_synthetic.yaml"),
           "overrides": [*CELL, f"train.max_steps={steps}"], "preset": "native", "seeds": seeds,
           "encoders": encoders}
    path = tmp_path / f"{out}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_study_of_random_pretrained_and_plugin_encoders(tmp_path: Path) -> None:
    encoders = [{"name": "rand", "encoder": "clipvil-rn-tiny"},
                {"name": "clip", "encoder": "clipvil-rn-tiny",
                 "pretrain": {"recipe": str(REPO / "configs/clip/synthetic_rn_tiny.yaml"), "overrides": PRETRAIN}},
                {"name": "plug", "plugin": ["rand", "clip"]}]
    report = run_study(_study(tmp_path, encoders, [0, 1]))
    out = tmp_path / "out"
    assert [r["encoder"] for r in report["rows"]] == ["rand", "clip", "plug"]
    assert all(r["seeds"] == [0, 1] for r in report["rows"])
    exported = out / "pretrain" / "clip" / "export" / "clipvil-rn-tiny.pt"
    provenance = FeatureStore(out / "features" / "clip").provenance  # grids of the pre-trained weights
    assert provenance["weights_sha256"] == hashlib.sha256(exported.read_bytes()).hexdigest()
    assert FeatureStore(out / "features" / "rand").provenance["weights_format"] == "random"
    plug = yaml.safe_load((out / "cells" / "plug" / "seed0" / "config.yaml").read_text())
    assert plug["task"]["features"] == [str(out / "features" / "rand"), str(out / "features" / "clip")]
    cell = json.loads((out / "cells" / "rand" / "seed1.json").read_text())
    row = report["rows"][0]
    values = [json.loads((out / "cells" / "rand" / f"seed{s}.json").read_text())["metrics"]["overall"] for s in (0, 1)]
    assert row["mean"]["overall"] == pytest.approx(sum(values) / 2) and cell["seed"] == 1
    assert row["std"]["overall"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)
    table = (out / "study.md").read_text()
    assert table.splitlines()[0].startswith("| encoder | family | seeds | accuracy (overall) |")
    assert len(table.splitlines()) == 5 and (out / "study.png").read_bytes()[:4] == b"\x89PNG"


def test_a_killed_study_continues_where_it_stopped(tmp_path: Path) -> None:
    encoders = [{"name": "rand", "encoder": "clipvil-rn-tiny"}]
    config = _study(tmp_path, encoders, [0, 1], steps=24)
    cells = tmp_path / "out" / "cells" / "rand"
    proc = subprocess.Popen([sys.executable, "-m", "clipvil.cli", "study", str(config)], cwd=tmp_path,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    try:  # kill inside the second cell: seed 0 finished, seed 1 has a checkpoint but no record yet
        while not ((cells / "seed0.json").is_file() and (cells / "seed1" / "checkpoints" / "last.pt").is_file()):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the study made no progress"
            time.sleep(0.01)
        proc.kill()
    finally:
        proc.kill()
        proc.wait()
    assert not (cells / "seed1.json").exists()
    saved = load_checkpoint(cells / "seed1" / "checkpoints" / "last.pt")["train_state"]["step"]
    assert 0 < saved < 24  # killed inside the cell: the rerun resumes it from this checkpoint
    finished = (cells / "seed0.json").stat().st_mtime_ns
    report = run_study(config)
    assert (cells / "seed0.json").stat().st_mtime_ns == finished  # a finished cell is not redone
    steps = [json.loads(line)["step"] for line in (cells / "seed1" / "logs" / "train.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 25))
    reference = run_study(_study(tmp_path, encoders, [1], out="ref", steps=24))  # the same cell, never killed
    assert report["rows"][0]["values"]["overall"][1] == reference["rows"][0]["values"]["overall"][0]


def test_bad_study_configs_name_the_entry(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="refers to 'nope'"):
        load_study(_study(tmp_path, [{"name": "a", "encoder": "clipvil-rn-tiny"}, {"name": "b", "plugin": ["nope"]}],
                          [0]))
    with pytest.raises(ValueError, match="unique"):
        load_study(_study(tmp_path, [{"name": "a", "encoder": "x"}, {"name": "a", "encoder": "y"}], [0]))


def test_the_caption_adapter_points_the_recipe_at_the_world_and_reports_cider(tmp_path: Path) -> None:
    from clipvil.apps.study_tasks import ADAPTERS
    from clipvil.engine import load_config

    adapter = ADAPTERS["caption"]
    recipe = Path(__file__).resolve().parents[2] / "configs/caption/transformer_synthetic.yaml"
    overrides = adapter.overrides(tmp_path / "world", [tmp_path / "a", tmp_path / "b"])
    cfg = load_config(recipe, overrides)
    assert cfg.task.karpathy_file == tmp_path / "world" / "captions" / "dataset_coco.json"
    assert cfg.task.features == [tmp_path / "a", tmp_path / "b"] and cfg.task.feature_encoder == ""
    assert adapter.report({"CIDEr": 0.5, "Bleu_4": 0.2, "ROUGE_L": 0.4, "n": 3}) == {
        "overall": 0.5, "Bleu_4": 0.2, "ROUGE_L": 0.4}


NAV_WORLD = {"kind": "nav", "seed": 0, "connectivity": str(REPO.parent / "shared/data/clip-vil/connectivity"),
             "nav": {"train_scans": ["8194nk5LbLH"], "unseen_scans": ["GdvgFV5R1Z5"], "train_paths": 16,
                     "val_seen_paths": 3, "val_unseen_paths": 4, "aug_paths": 0, "languages": ["en"],
                     "width": 64, "height": 48}}
NAV_CELL = ["train.max_steps=4", "train.eval_every=2", "train.checkpoint_every=2", "train.batch_size=8",
            "task.model_overrides={word_dim: 16, hidden: 16, dropout: 0.3, feat_dropout: 0.3, action_dim: 8}"]


def _nav_study(tmp_path: Path, **changes: object) -> Path:
    cfg = {"out": str(tmp_path / "out"), "world": NAV_WORLD, "adapter": "vln",
           "recipe": str(REPO / "configs/vln/navworld_follower.yaml"), "overrides": NAV_CELL, "preset": "native",
           "seeds": [0], "encoders": [{"name": "rand", "encoder": "clipvil-rn-tiny"}], **changes}
    path = tmp_path / "nav.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_navigation_study_reads_pooled_fp32_views_and_reports_both_validation_splits(tmp_path: Path) -> None:
    report = run_study(_nav_study(tmp_path))
    out = tmp_path / "out"
    manifest = json.loads((out / "world" / "manifest.json").read_text())
    store = FeatureStore(out / "features" / "rand")
    assert store.provenance["pooled"] is True and store.provenance["dtype"] == "float32"
    assert len(store) == 36 * sum(manifest["viewpoints"].values())  # every view of every viewpoint
    cell = yaml.safe_load((out / "cells" / "rand" / "seed0" / "config.yaml").read_text())
    assert cell["task"]["data_dir"] == str(out / "world") and cell["task"]["features"] == str(out / "features" / "rand")
    assert cell["task"]["vocab"] == str(out / "world" / "train_vocab.txt")
    record = json.loads((out / "cells" / "rand" / "seed0.json").read_text())
    assert record["split"] == "val_seen+val_unseen"
    # the study evaluates best.pt again on both splits: the numbers the run logged at its best step
    evals = [json.loads(line) for line in (out / "cells/rand/seed0/logs/eval.jsonl").read_text().splitlines()]
    best = max((e for e in evals if e["split"] == "val_unseen"), key=lambda e: (e["sr"], -e["step"]))["step"]
    logged = {e["split"]: e for e in evals if e["step"] == best}
    assert record["metrics"] == pytest.approx({
        "overall": logged["val_unseen"]["sr"], "SPL val_unseen": logged["val_unseen"]["spl"],
        "SR val_seen": logged["val_seen"]["sr"], "SPL val_seen": logged["val_seen"]["spl"]})
    assert (out / "study.md").read_text().startswith("| encoder | family | seeds | SR val_unseen (overall) |")
    assert report["rows"][0]["mean"]["overall"] == record["metrics"]["overall"]


def test_navigation_study_configs_are_checked_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="trains on 'nav' worlds; set world.kind: nav"):
        load_study(_nav_study(tmp_path, world={"images": 30}))
    with pytest.raises(ValueError, match=r"world.nav: unknown field\(s\) \['scans'\]"):
        load_study(_nav_study(tmp_path, world={**NAV_WORLD, "nav": {"scans": ["x"]}}))
    pre = {"recipe": str(REPO / "configs/clip/synthetic_rn_tiny.yaml"), "world": "study"}
    with pytest.raises(ValueError, match="pre-training reads images and captions"):
        load_study(_nav_study(tmp_path, encoders=[{"name": "c", "encoder": "clipvil-rn-tiny", "pretrain": pre}]))
    with pytest.raises(ValueError, match="pretrain_world.kind must be 'image'"):
        load_study(_nav_study(tmp_path, pretrain_world=NAV_WORLD))
    with pytest.raises(ValueError, match=r"nav.yaml: world.connectivity: no such folder"):
        load_study(_nav_study(tmp_path, world={**NAV_WORLD, "connectivity": str(tmp_path / "none")}))
    plugin = [{"name": "a", "encoder": "clipvil-rn-tiny"}, {"name": "b", "encoder": "clipvil-rn-tiny"},
              {"name": "p", "plugin": ["a", "b"]}]
    with pytest.raises(ValueError, match="nav.yaml: encoder 'p': the vln task reads one feature store"):
        load_study(_nav_study(tmp_path, encoders=plugin))
    with pytest.raises(ValueError, match=r"nav.yaml: override 'train.max_stpes=3'"):
        load_study(_nav_study(tmp_path, overrides=[*NAV_CELL, "train.max_stpes=3"]))
    with pytest.raises(ValueError, match=r"nav.yaml: config file not found: .*nope.yaml"):
        load_study(_nav_study(tmp_path, recipe=str(tmp_path / "nope.yaml")))
    with pytest.raises(ValueError, match=r"nav.yaml: world.nav: unknown field"):
        load_study(_nav_study(tmp_path, world={**NAV_WORLD, "nav": {"trian_paths": 3}}))
    assert not (tmp_path / "out").exists()


def test_the_vln_adapter_points_the_recipe_at_the_navigation_world(tmp_path: Path) -> None:
    from clipvil.apps.study_tasks import ADAPTERS
    from clipvil.engine import load_config

    adapter = ADAPTERS["vln"]
    cfg = load_config(REPO / "configs/vln/navworld_follower.yaml", adapter.overrides(tmp_path / "w", [tmp_path / "s"]))
    assert (cfg.task.data_dir, cfg.task.connectivity, cfg.task.features, cfg.task.vocab) == (
        tmp_path / "w", tmp_path / "w" / "connectivity", tmp_path / "s", tmp_path / "w" / "train_vocab.txt")
    with pytest.raises(ValueError, match="one view-feature store"):
        adapter.overrides(tmp_path, [tmp_path / "a", tmp_path / "b"])
    metrics = {"val_seen/sr": 0.5, "val_seen/spl": 0.4, "val_unseen/sr": 0.25, "val_unseen/spl": 0.2, "val_seen/n": 4}
    assert adapter.report(metrics) == {"overall": 0.25, "SPL val_unseen": 0.2, "SR val_seen": 0.5, "SPL val_seen": 0.4}


@pytest.mark.parametrize("path", sorted((REPO / "configs/study").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_study_loads_and_its_recipes_take_the_adapters_overrides(path: Path, tmp_path: Path) -> None:
    from clipvil.apps.study_tasks import ADAPTERS
    from clipvil.engine import load_config

    cfg, base = load_study(path)
    overrides = ADAPTERS[cfg.adapter].overrides(tmp_path / "world", [tmp_path / "features"])
    run = load_config(base / cfg.recipe, [*overrides, *cfg.overrides])
    assert run.task_name == {"vqa": "vqa", "caption": "caption", "vln": "vln"}[cfg.adapter]
    for encoder in cfg.encoders:
        if encoder.pretrain is not None:
            pretrain = load_config(base / encoder.pretrain.recipe, encoder.pretrain.overrides)
            assert pretrain.task_name in ("clip", "classify")
