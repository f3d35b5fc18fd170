"""CLIP-ViL_p pre-training on a tiny world: objectives' masks and labels in real batches, both optimizers,
mixed aspect ratios, token sampling, golden first losses, exact resume, and 2-process DDP == 1 process."""

from __future__ import annotations

import io
import json
import math
import os
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from vl_world import pretrain_config, write_world

from clipvil.engine import config_from_dict, train
from clipvil.engine.builders import build_task
from clipvil.engine.checkpoint import last_path, load_checkpoint
from clipvil.engine.task import BatchLayout
from clipvil.families.vl.pretrain_data import IGNORE_INDEX

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_world(tmp_path_factory.mktemp("vl_world"))


@pytest.fixture(scope="module")
def task_and_batches(world: Path, tmp_path_factory: pytest.TempPathFactory):
    cfg = config_from_dict(pretrain_config(world, tmp_path_factory.mktemp("built"), max_steps=6),
                           ["task.objectives=[mlm, itm, qa]"])
    task = build_task(cfg, torch.device("cpu"))
    data = task.dataset("train")
    sampler = task.batch_sampler("train", data, BatchLayout(8, 1, 0, 1, 0, True))
    batches = [(keys, task.collate([data[k] for k in keys])) for keys in sampler]
    return task, data, batches


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "logs/train.jsonl").read_text().splitlines()]


def test_masks_and_labels_follow_the_objectives(task_and_batches) -> None:
    task, data, batches = task_and_batches
    tok = task.codec.tokenizer.tokenizer
    special = set(tok.all_special_ids)
    chosen = regular = 0
    for keys, batch in batches:
        idx = [k[1] for k in keys]
        ids, labels, att = batch["input_ids"], batch["mlm_labels"], batch["attention_mask"]
        m = labels != IGNORE_INDEX
        assert not (m & (att == 0)).any()  # never a padded position
        assert all(int(t) not in special for t in labels[m])  # never [CLS] / [SEP]
        itm = batch["itm_labels"]
        assert int(itm.sum()) == len(itm) // 2  # exactly half matched
        for row, i in enumerate(idx):
            own = data.codec.encode(data.sentences[i].sentence)
            shown = [int(labels[row, j]) if m[row, j] else int(ids[row, j]) for j in range(int(att[row].sum()))]
            if itm[row] == 1:  # its own sentence (labels restore the masked ids)
                assert shown == own
            else:  # another image's sentence
                partners = [data.sentences[j] for j in idx if data.sentences[j].image_id != data.sentences[i].image_id]
                assert any(shown == data.codec.encode(p.sentence) for p in partners)
            qa = int(batch["qa_labels"][row])
            label = data.sentences[i].labels
            if itm[row] == 0 or label is None:
                assert qa == IGNORE_INDEX  # captions and mismatched questions have no QA target
            else:
                assert qa in label  # an answer of the question's own label
        chosen += int(m.sum())
        regular += int(sum(int(t) not in special for t in ids[att.bool()]))
        n_mask = int((ids[m] == tok.mask_token_id).sum())
        assert n_mask <= int(m.sum())
    assert 0.05 < chosen / regular < 0.3  # ~15 % of the non-special tokens (a few hundred tokens)


def test_batches_have_one_orientation_and_the_preset_size(task_and_batches) -> None:
    _, _, batches = task_and_batches
    shapes = {tuple(b["pixels"].shape[2:]) for _, b in batches}
    assert shapes == {(64, 96), (96, 64)}  # landscape and portrait batches both occur
    for keys, batch in batches:
        hws = batch["content_hw"]
        assert all(h <= batch["pixels"].shape[2] and w <= batch["pixels"].shape[3] for h, w in hws)
        sizes = {(h >= w) for h, w in hws}
        assert len(sizes) == 1  # a batch is all portrait or all landscape


def test_pretraining_samples_visual_tokens_among_real_cells(task_and_batches) -> None:
    task, _, batches = task_and_batches
    batch = batches[0][1]
    _, out, _ = task.losses(batch)
    enc = out.encoded
    assert enc.visual.shape[1] == 4  # visual_tokens of the 6 cells of a 2x3 / 3x2 grid
    assert bool(enc.visual_mask.all())  # all sampled cells are real (64x96 content fills 2x3 cells)
    first, _, _ = task.losses(batch)  # the same batch seed draws the same tokens
    assert all(torch.equal(first[k], v) for k, v in task.losses(batch)[0].items())


CONSTANT = ["schedule.name=step", "task.objectives=[mlm, itm, qa]"]  # a linear decay depends on max_steps


@pytest.fixture(scope="module")
def whole_run(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("whole")
    train(config_from_dict(pretrain_config(world, out, max_steps=3), CONSTANT))
    return out


def _write_shard(path: Path, images: list[Path], captions: list[str]) -> None:
    """A WebDataset tar shard: <key>.jpg + <key>.txt per sample (written with tarfile, as webdataset reads it)."""
    with tarfile.open(path, "w") as tar:
        for k, (image, caption) in enumerate(zip(images, captions)):
            for name, data in ((f"s{k:04d}.jpg", image.read_bytes()), (f"s{k:04d}.txt", caption.encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_webdataset_shards_are_an_indexed_split(task_and_batches, world: Path, tmp_path: Path) -> None:
    task, _, _ = task_and_batches
    images = sorted((world / "images/train2014").glob("*.jpg"))[:8]
    captions = [f"caption number {k}" for k in range(8)]
    _write_shard(tmp_path / "00000.tar", images[:4], captions[:4])
    _write_shard(tmp_path / "00001.tar", images[4:], captions[4:])
    task.cfg.shard_splits = {"shards": str(tmp_path / "{00000..00001}.tar")}
    data = task.dataset("shards")
    assert len(data) == 8 and [s.sentence for s in data.sentences] == captions  # shard, then tar order
    sampler = task.batch_sampler("shards", data, BatchLayout(2, 1, 0, 1, 0, True))
    for keys in sampler:
        batch = task.collate([data[k] for k in keys])
        for row, (_, i) in enumerate(keys):
            pixels, _ = task.loader(images[i])
            assert torch.equal(batch["pixels"][row, :, : pixels.shape[1], : pixels.shape[2]], pixels)
        assert batch["qa_labels"].eq(IGNORE_INDEX).all()  # captions: no QA target
    portrait = {i for i, im in enumerate(images) if Image.open(im).height > Image.open(im).width}
    assert all(len({i in portrait for _, i in keys}) == 1 for keys in sampler)  # orientation buckets from the index


def test_first_losses_are_at_chance_and_golden(whole_run: Path) -> None:
    log = _log(whole_run)
    first = log[0]
    # ≈ uniform over the 30522 BERT ids: the tied word table gives logits of std ≈ 1 at init, which adds
    # ≈ σ²/2 to ln V for Gaussian logits
    assert math.log(30522) - 0.2 < first["loss_mlm"] < math.log(30522) + 1.0
    assert first["loss_itm"] == pytest.approx(math.log(2), abs=0.05)
    assert first["loss_qa"] == pytest.approx(math.log(6), abs=0.5)  # 6 answers in the table
    assert first["loss"] == pytest.approx(first["loss_mlm"] + first["loss_itm"] + first["loss_qa"], rel=1e-6)
    golden = [(10.927171, 0.694220, 2.083262), (7.230679, 0.693342, 2.325983)]  # torch 2.14 CPU, seed 0
    got = [(r["loss_mlm"], r["loss_itm"], r["loss_qa"]) for r in log[:2]]
    assert np.allclose(got, golden, rtol=1e-4), got


def test_both_optimizers_step_their_own_parameters(world: Path, tmp_path: Path) -> None:
    """One update with AdamW at lr 0 moves only the trunk (SGD); with both on, both parts move; the checkpoint
    holds an SGD state for exactly the trainable tower parameters and AdamW moments for the rest."""
    init = build_task(config_from_dict(pretrain_config(world, tmp_path / "init")), torch.device("cpu"))
    start = {k: v.clone() for k, v in init.model.state_dict().items()}
    n_visual = len(init.model.parameter_groups()["visual"])
    train(config_from_dict(pretrain_config(world, tmp_path / "sgd_only", max_steps=1), ["optim.lr=0.0"]))
    train(config_from_dict(pretrain_config(world, tmp_path / "both", max_steps=1)))

    def moved(run: str) -> set[str]:
        after = load_checkpoint(last_path(tmp_path / run))["model"]
        return {k for k in after if after[k].is_floating_point() and "running_" not in k
                and not torch.equal(start[k], after[k])}

    sgd_only, both = moved("sgd_only"), moved("both")
    assert sgd_only and all(k.startswith("visual.") for k in sgd_only)  # the trunk moved, by SGD alone
    assert "visual.visual.conv1.weight" in sgd_only  # the stem (residual branches start at 0: bn3 zero-init)
    assert "transformer.bert.encoder.layer.0.attention.self.query.weight" in both
    assert {k for k in both if k.startswith("visual.")} == sgd_only  # SGD's step does not depend on AdamW's lr
    assert not any(".attnpool." in k for k in both)  # frozen: the grid never reaches the attention pool
    opts = load_checkpoint(last_path(tmp_path / "both"))["optimizers"]
    assert set(opts) == {"main", "trunk"}
    sgd, adamw = opts["trunk"]["param_groups"][0], opts["main"]["param_groups"][0]
    assert "momentum" in sgd and "betas" not in sgd and sgd["lr"] == pytest.approx(3e-3)  # torch.optim.SGD
    assert "betas" in adamw and adamw["weight_decay"] == pytest.approx(0.01)  # torch.optim.AdamW
    assert sum(len(g["params"]) for g in opts["trunk"]["param_groups"]) == n_visual
    assert opts["main"]["state"] and all("exp_avg" in st for st in opts["main"]["state"].values())


def test_exact_resume_mid_epoch(world: Path, whole_run: Path, tmp_path: Path) -> None:
    train(config_from_dict(pretrain_config(world, tmp_path, max_steps=2), CONSTANT))
    train(config_from_dict(pretrain_config(world, tmp_path, max_steps=3), CONSTANT))  # resumes at step 2 of 6
    assert [r["loss"] for r in _log(tmp_path)] == [r["loss"] for r in _log(whole_run)]
    a, b = load_checkpoint(last_path(tmp_path))["model"], load_checkpoint(last_path(whole_run))["model"]
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_retrieval_by_itm_reranking_of_clip_candidates(world: Path, whole_run: Path, tmp_path: Path) -> None:
    """k = 1 keeps CLIP's zero-shot R@1; k = all candidates ranks purely by the ITM head (scored here directly)."""
    data = {"format": "karpathy", "root": str(world / "captions"), "image_root": str(world / "images"),
            "splits": {"test": "test"}}
    base = pretrain_config(world, tmp_path, max_steps=3)
    cfg = config_from_dict(base, [*CONSTANT, f"task.retrieval={{data: {json.dumps(data)}, k: 1}}"])
    task = build_task(cfg, torch.device("cpu"))
    task.model.load_state_dict(load_checkpoint(last_path(whole_run))["model"])
    task.eval()
    rset = task.dataset("test")
    batch = task.collate([rset[i] for i in range(len(rset))])
    results = {1: task.evaluate([batch], "test", tmp_path)}
    task.cfg.retrieval.k = 8  # every caption / image is a candidate
    results[8] = task.evaluate([batch], "test", tmp_path)
    assert results[1]["i2t_R@1"] == results[1]["zeroshot/i2t_R@1"]
    assert results[1]["t2i_R@1"] == results[1]["zeroshot/t2i_R@1"]
    images = [im.image for im in rset.images]  # 4 images, 2 captions each, in order
    captions = [c for caps in rset.captions for c in caps]
    with torch.no_grad():
        probs = torch.zeros(len(images), len(captions))
        for i, path in enumerate(images):
            pixels, hw = task.loader(path)
            for t, caption in enumerate(captions):
                ids = torch.tensor([task.codec.encode(caption)])
                enc = task.model.encode(pixels[None], [hw], ids, torch.ones_like(ids))
                probs[i, t] = float(task.model.itm(enc.pooled).softmax(-1)[0, 1])
    owner = np.repeat(np.arange(len(images)), 2)
    best_own = [int(probs[i].argmax()) // 2 == i for i in range(len(images))]
    assert results[8]["i2t_R@1"] == pytest.approx(100.0 * np.mean(best_own))
    t2i = [int(probs[:, t].argmax()) == owner[t] for t in range(len(captions))]
    assert results[8]["t2i_R@1"] == pytest.approx(100.0 * np.mean(t2i))
    assert json.loads((tmp_path / "retrieval.json").read_text())["k"] == 8.0


@pytest.mark.slow
def test_two_process_ddp_equals_one_process(world: Path, tmp_path: Path) -> None:
    """torchrun -m clipvil.cli train: 2 ranks x 1 micro-batch == 1 process x 2 accumulated micro-batches
    (BatchNorm in train mode uses each micro-batch's statistics: parameters agree, running stats may not)."""
    ddp = pretrain_config(world, tmp_path / "ddp", max_steps=2, batch_size=8)
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(ddp))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", "-m", "clipvil.cli", "train", str(tmp_path / "ddp.yaml")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    train(config_from_dict(pretrain_config(world, tmp_path / "one", max_steps=2, batch_size=8, grad_accum=2)))
    assert [r["loss"] for r in _log(tmp_path / "ddp")] == pytest.approx([r["loss"] for r in _log(tmp_path / "one")],
                                                                        rel=1e-5)
    a, b = load_checkpoint(last_path(tmp_path / "ddp"))["model"], load_checkpoint(last_path(tmp_path / "one"))["model"]
    for key in b:
        if "running_" not in key and "num_batches" not in key:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=2e-5)
