"""The ImageNet-style baseline: scene targets, BCE/CE losses by hand, average precision, export to the encoders."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from clip_testlib import FAST, tiny_world
from PIL import Image

from clipvil.apps.export_clip import export_clip
from clipvil.data.synthetic.labels import label_names
from clipvil.encoders import build_encoder
from clipvil.engine import config_from_dict, train
from clipvil.engine.builders import build_task
from clipvil.engine.checkpoint import last_path, load_checkpoint
from clipvil.families.clip.classify import average_precision


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_world(tmp_path_factory.mktemp("classify_world") / "world")


def _config(out: Path, task: dict, steps: int = 2):
    return config_from_dict({"task": {"name": "classify", **task}, "optim": {"name": "adamw", "lr": 1e-3},
                             "train": {"batch_size": 8, "max_steps": steps, "eval_splits": ["val"], **FAST},
                             "out_dir": str(out)})


def test_scene_targets_and_the_bce_loss_by_hand(world: Path, tmp_path: Path) -> None:
    task = build_task(_config(tmp_path, {"model": "clipvil-rn-tiny", "root": str(world)}), torch.device("cpu"))
    data = task.dataset("val")
    scenes = json.loads((world / "scenes" / "scenes_val2014.json").read_text())["scenes"]
    names = label_names("attribute")
    batch = task.collate([data[i] for i in range(len(data))])
    for row, scene in zip(batch["target"], scenes):  # multi-hot from the ground-truth objects, read here
        shown = {o["shape"] for o in scene["objects"]} | {o["color"] for o in scene["objects"]}
        assert {names[i] for i in torch.nonzero(row).flatten().tolist()} == shown
    task.eval()
    loss, _ = task(batch)
    p = torch.sigmoid(task.model(batch["image"]))
    t = batch["target"]
    by_hand = -(t * p.log() + (1 - t) * (1 - p).log()).mean()
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-4)
    assert task.primary_metric == "mAP"


def test_average_precision_by_hand() -> None:
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6]).numpy()
    assert average_precision(scores, torch.tensor([1.0, 0, 1, 0]).numpy()) == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert average_precision(scores, torch.tensor([0.0, 0, 0, 1]).numpy()) == pytest.approx(25.0)
    assert math.isnan(average_precision(scores, torch.zeros(4).numpy()))


def test_a_trained_tower_exports_for_build_encoder(world: Path, tmp_path: Path) -> None:
    result = train(_config(tmp_path / "run", {"model": "clipvil-vit-tiny", "root": str(world)}))
    assert 0 <= result.last_eval["val"]["mAP"] <= 100
    state = load_checkpoint(last_path(tmp_path / "run"))["model"]
    task = build_task(_config(tmp_path / "x", {"model": "clipvil-vit-tiny", "root": str(world)}), torch.device("cpu"))
    task.model.load_state_dict(state)
    task.eval()
    exported = export_clip(last_path(tmp_path / "run"), tmp_path / "export")
    assert exported.task == "classify" and exported.encoder == "clipvil-vit-tiny"
    tower = build_encoder("clipvil-vit-tiny", weights=exported.weights)
    pixels = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        grid = tower(pixels, pooled=True)
        torch.testing.assert_close(grid.pooled, task.model.visual(pixels), rtol=1e-4, atol=1e-5)  # trained tower


def test_single_label_image_folder_with_cross_entropy(tmp_path: Path) -> None:
    for split in ("train", "val"):
        for k, colour in enumerate(("red", "blue")):
            folder = tmp_path / "folders" / split / colour
            folder.mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (40, 30), (200 * (1 - k), 20 * i, 200 * k)).save(folder / f"{i}.png")
    cfg = _config(tmp_path / "run", {"model": "clipvil-rn-tiny", "labels": "folder", "root": str(tmp_path / "folders")},
                  steps=1)
    task = build_task(cfg, torch.device("cpu"))
    batch = task.collate([task.dataset("val")[i] for i in range(8)])
    assert batch["target"].tolist() == [0] * 4 + [1] * 4  # sorted class folders: blue = 0, red = 1
    task.eval()
    loss, _ = task(batch)
    assert loss.item() == pytest.approx(F.cross_entropy(task.model(batch["image"]), batch["target"]).item(), rel=1e-5)
    metrics = train(cfg).last_eval["val"]
    assert task.primary_metric == "accuracy" and metrics["top5"] == 100.0 and 0 <= metrics["accuracy"] <= 100


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from clipvil.data.synthetic.corpus import CorpusSpec, make_corpus

    root = tmp_path_factory.mktemp("corpus") / "c"
    make_corpus(root, CorpusSpec(n_images=100, val_images=20, shard_size=40, size=96), workers=1, progress=False)
    return root


def test_shard_labels_are_the_cls_members_and_train_with_ce(corpus: Path, tmp_path: Path) -> None:
    import webdataset as wds

    task_cfg = {"model": "clipvil-rn-tiny", "labels": "shards", "root": str(corpus),
                "splits": {"train": "train/web-{000000..000001}.tar", "val": "val/web-000000.tar"}}
    task = build_task(_config(tmp_path / "a", task_cfg), torch.device("cpu"))
    data = task.dataset("val")
    read = [int(cls) for (cls,) in wds.WebDataset(str(corpus / "val" / "web-000000.tar"), shardshuffle=False)
            .to_tuple("cls")]
    assert [int(data[i][1]) for i in range(len(data))] == read  # the .cls members, in tar order
    assert task.classes[0] == "circle" and len(task.classes) == 12 and not task.multi_label
    batch = task.collate([data[i] for i in range(8)])
    task.eval()
    loss, _ = task(batch)
    assert loss.item() == pytest.approx(F.cross_entropy(task.model(batch["image"]), batch["target"]).item(), rel=1e-5)
    result = train(_config(tmp_path / "b", task_cfg, steps=2))
    assert result.step == 2 and 0.0 <= result.last_eval["val"]["accuracy"] <= 100.0


def test_shard_labels_need_the_corpus_manifest_and_cls(corpus: Path, tmp_path: Path) -> None:
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(corpus / "val", bare / "val")
    task_cfg = {"model": "clipvil-rn-tiny", "labels": "shards", "root": str(bare),
                "splits": {"train": "val/web-000000.tar", "val": "val/web-000000.tar"}}
    with pytest.raises(FileNotFoundError, match="corpus.json: not found"):
        build_task(_config(tmp_path / "a", task_cfg), torch.device("cpu")).dataset("val")
