"""The contrastive CLIP task on the engine: open_clip's ClipLoss, exact resume, DDP with gather-with-grad equal
to one process, freezing and layer-wise learning rates, OpenAI archives as a start, and export to the encoders."""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F
from clip_testlib import clip_config, openai_archive, tiny_world

from clipvil.apps.export_clip import export_clip
from clipvil.apps.extract import ExtractConfig, run_extract
from clipvil.encoders import build_encoder, get_preset, load_image, prepare
from clipvil.engine import save_config, train
from clipvil.engine.builders import build_task
from clipvil.engine.checkpoint import last_path, load_checkpoint
from clipvil.engine.logs import read_jsonl
from clipvil.features.store import FeatureStore


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_world(tmp_path_factory.mktemp("clip_world") / "world")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _losses(run: Path) -> list[float]:
    return [r["loss"] for r in read_jsonl(run / "logs" / "train.jsonl")]


def test_the_loss_is_clip_loss_computed_by_hand(world: Path, tmp_path: Path) -> None:
    task = build_task(clip_config(world, tmp_path, "clipvil-rn-tiny"), torch.device("cpu"))
    data = task.dataset("train")
    batch = task.collate([data[(0, i)] for i in range(6)])
    task.eval()  # BatchNorm in eval mode: the two forwards below see the same statistics
    loss, logs = task(batch)
    image = F.normalize(task.model.encode_image(batch["image"]), dim=-1)  # [6, D]
    text = F.normalize(task.model.encode_text(batch["text"]), dim=-1)  # [6, D]
    logits = math.exp(task.model.logit_scale.item()) * image @ text.T  # [6, 6]
    labels = torch.arange(6)
    by_hand = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert logs["logit_scale"] == pytest.approx(1 / 0.07, rel=1e-5)  # CLIP's initial temperature
    assert math.log(6) - 1.0 < loss.item() < math.log(6) + 3.0  # near chance for random towers


def test_augmented_items_are_a_function_of_seed_epoch_and_index(world: Path, tmp_path: Path) -> None:
    task = build_task(clip_config(world, tmp_path), torch.device("cpu"))
    data = task.dataset("train")
    assert torch.equal(data[(1, 3)]["image"], data[(1, 3)]["image"])  # same epoch + item: the same crop
    assert not torch.equal(data[(1, 3)]["image"], data[(2, 3)]["image"])  # another epoch: another crop


def test_a_split_run_resumes_to_the_same_losses_and_weights(world: Path, tmp_path: Path) -> None:
    train(clip_config(world, tmp_path / "split", train={"max_steps": 2}))
    train(clip_config(world, tmp_path / "split", train={"max_steps": 4}))
    train(clip_config(world, tmp_path / "whole", train={"max_steps": 4}))
    assert _losses(tmp_path / "split") == _losses(tmp_path / "whole")
    a = load_checkpoint(last_path(tmp_path / "split"))["model"]
    b = load_checkpoint(last_path(tmp_path / "whole"))["model"]
    assert all(torch.equal(a[k], b[k]) for k in b)


@pytest.mark.slow
def test_two_process_ddp_with_gather_with_grad_matches_one_process(world: Path, tmp_path: Path) -> None:
    """ViT (no BatchNorm): 2 ranks x 4 pairs scored against the gathered 8 == one process with 8 pairs.

    SGD, not Adam: attention key biases get no gradient in exact arithmetic (softmax ignores them), and Adam
    turns the 1e-12 float noise there into lr-sized steps that differ with the summation order."""
    sgd = {"optim": {"name": "sgd", "lr": 0.5}}
    save_config(clip_config(world, tmp_path / "ddp", **sgd), tmp_path / "ddp.yaml")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "clipvil.cli", "train", str(tmp_path / "ddp.yaml")]
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    train(clip_config(world, tmp_path / "one", **sgd))
    losses = _losses(tmp_path / "one")
    assert _losses(tmp_path / "ddp") == pytest.approx(losses, rel=1e-5) and losses[-1] != losses[0]
    a, b = load_checkpoint(last_path(tmp_path / "ddp"))["model"], load_checkpoint(last_path(tmp_path / "one"))["model"]
    for key in b:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5)


def test_frozen_parts_stay_and_the_trunk_steps_at_its_own_rate(world: Path, tmp_path: Path) -> None:
    extra = {"extra_optimizers": {"trunk": {"modules": ["visual.layer2"], "optim": {"name": "sgd", "lr": 0.05}}}}
    cfg = clip_config(world, tmp_path, "clipvil-rn-tiny", task={"freeze_text": True, "freeze_image_stages": 2},
                      train={"max_steps": 2}, **extra)
    before = {k: v.clone() for k, v in build_task(cfg, torch.device("cpu")).model.state_dict().items()}
    train(cfg)
    after = load_checkpoint(last_path(tmp_path))["model"]
    frozen = ("transformer.", "token_embedding.", "ln_final.", "positional_embedding", "text_projection",
              "visual.conv1.", "visual.bn1.", "visual.bn3.", "visual.layer1.")
    for key, value in before.items():
        moved = not torch.equal(value, after[key])
        if key.startswith(frozen):
            assert not moved, f"{key} is frozen (BatchNorm statistics included) but changed"
    assert not torch.equal(before["visual.layer2.0.conv1.weight"], after["visual.layer2.0.conv1.weight"])
    assert not torch.equal(before["visual.layer4.0.conv1.weight"], after["visual.layer4.0.conv1.weight"])
    log = read_jsonl(tmp_path / "logs" / "train.jsonl")
    assert [r["lr/trunk"] for r in log] == [0.05, 0.05] and log[0]["lr"] == pytest.approx(1e-3)


def test_an_openai_archive_starts_the_run_with_quick_gelu(world: Path, tmp_path: Path) -> None:
    archive = tmp_path / "RN-tiny.pt"
    expected = openai_archive(archive)
    task = build_task(clip_config(world, tmp_path, "clipvil-rn-tiny", task={"weights": str(archive)}),
                      torch.device("cpu"))
    state = task.model.state_dict()
    assert all(torch.equal(state[k], expected[k]) for k in expected)
    assert isinstance(task.model.transformer.resblocks[0].mlp.gelu, open_clip.transformer.QuickGELU)


def test_exported_weights_give_the_trained_towers_grids(world: Path, tmp_path: Path) -> None:
    train(clip_config(world, tmp_path / "run", "clipvil-rn-tiny", train={"max_steps": 2}))
    trained = build_task(clip_config(world, tmp_path / "x", "clipvil-rn-tiny"), torch.device("cpu")).model
    trained.load_state_dict(load_checkpoint(last_path(tmp_path / "run"))["model"])
    trained.eval()
    exported = export_clip(last_path(tmp_path / "run"), tmp_path / "export")
    assert (exported.encoder, exported.weights.name, exported.config.name) == (
        "clipvil-rn-tiny", "clipvil-rn-tiny.pt", "clipvil-rn-tiny.json")
    again = open_clip.create_model("clipvil-rn-tiny", pretrained=str(exported.weights))  # open_clip reads it
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in again.state_dict().items())

    tower = build_encoder("clipvil-rn-tiny", weights=exported.weights)
    pixels = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        grid = tower(pixels, pooled=True)
        torch.testing.assert_close(grid.feats, _layer4(trained.visual, pixels), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(grid.pooled, trained.encode_image(pixels), rtol=1e-4, atol=1e-5)

    store = tmp_path / "store"  # `clipvil extract --weights` on the world's val images
    run_extract(ExtractConfig("clipvil-rn-tiny", world / "coco" / "val2014", store, preset="native",
                              weights=exported.weights, dtype="float32", progress=False, workers=0))
    saved = FeatureStore(store)
    assert saved.provenance["weights_sha256"] == hashlib.sha256(exported.weights.read_bytes()).hexdigest()
    first = min((world / "coco" / "val2014").glob("*.jpg"))
    prepared = prepare(load_image(first), get_preset("native"), tower.mean, tower.std, native=96)
    with torch.no_grad():
        expected = _layer4(trained.visual, prepared.pixels[None])[0]  # [9, 1024]
    torch.testing.assert_close(torch.from_numpy(saved.get(first.stem).feats), expected, rtol=1e-4, atol=1e-4)


def _layer4(v: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """The ModifiedResNet's layer4 map by hand (stem, avgpool, four stages), as [B, h*w, C]."""
    x = v.act3(v.bn3(v.conv3(v.act2(v.bn2(v.conv2(v.act1(v.bn1(v.conv1(pixels)))))))))  # [B, 32, H/2, W/2]
    fmap = v.layer4(v.layer3(v.layer2(v.layer1(v.avgpool(x)))))  # [B, 1024, h, w]
    return fmap.flatten(2).transpose(1, 2)


def test_webdataset_shards_train_and_resume_like_a_folder(world: Path, tmp_path: Path) -> None:
    """task.data.format=shards: tar shards of <key>.jpg + <key>.txt (as open_clip users keep corpora), indexed
    once per run; a run stopped after 2 updates and continued equals one uninterrupted run."""
    import io
    import json
    import tarfile

    from clipvil.engine import train
    from clipvil.engine.logs import read_jsonl

    karpathy = json.loads((world / "captions" / "dataset_coco.json").read_text())
    train_images = [im for im in karpathy["images"] if im["split"] == "train"][:24]
    shards = tmp_path / "shards"
    shards.mkdir()
    for k in range(2):
        with tarfile.open(shards / f"train-{k:03d}.tar", "w") as tar:
            for im in train_images[k * 12:(k + 1) * 12]:
                key = f"{k}{im['cocoid']:08d}"
                for name, data in ((f"{key}.jpg", (world / "coco" / im["filepath"] / im["filename"]).read_bytes()),
                                   (f"{key}.txt", im["sentences"][0]["raw"].encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    task = {"data": {"format": "shards", "root": str(shards), "image_root": str(shards),
                     "splits": {"train": "train-{000..001}.tar"}}}
    whole = train(clip_config(world, tmp_path / "whole", task=task, train={"max_steps": 4}))
    train(clip_config(world, tmp_path / "split", task=task, train={"max_steps": 2}))
    train(clip_config(world, tmp_path / "split", task=task, train={"max_steps": 4}))
    assert whole.step == 4 and list((tmp_path / "whole").glob("shard_index_*.json"))
    losses = [[r["loss"] for r in read_jsonl(tmp_path / d / "logs/train.jsonl")] for d in ("whole", "split")]
    assert losses[0] == losses[1] and len(losses[0]) == 4
