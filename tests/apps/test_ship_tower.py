"""`clipvil ship-tower` and shipped short names: a clip / classify run on a corpus becomes an fp16 safetensors
tower with provenance that `build_encoder`, `create_clip` and `--weights` load by name."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pytest
import torch
from safetensors.torch import load_file

from clipvil.apps.ship_tower import corpus_token_ids, ship_tower
from clipvil.cli import main
from clipvil.data.synthetic.corpus import CorpusSpec, make_corpus
from clipvil.encoders import build_encoder, shipped
from clipvil.encoders.weights import WeightsError, sha256_file
from clipvil.engine import config_from_dict, train
from clipvil.families.clip.model import create_clip

FAST = {"progress": False, "tensorboard": False, "log_every": 1, "checkpoint_every": 1}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ship")
    corpus = root / "corpus"
    make_corpus(corpus, CorpusSpec(n_images=100, val_images=20, shard_size=40, size=96), workers=1, progress=False)
    splits = {"train": "train/web-{000000..000001}.tar", "val": "val/web-000000.tar"}
    train_cfg = {"batch_size": 8, "max_steps": 3, "eval_splits": ["val"], **FAST}
    clip = config_from_dict({"task": {"name": "clip", "model": "clipvil-vit-tiny", "data": {
        "format": "shards", "root": str(corpus), "splits": splits, "captions_per_image": 1}},
        "optim": {"name": "adamw", "lr": 1e-3}, "train": train_cfg, "out_dir": str(root / "clip")})
    cls = config_from_dict({"task": {"name": "classify", "model": "clipvil-vit-tiny", "labels": "shards",
                                     "root": str(corpus), "splits": splits},
                            "optim": {"name": "adamw", "lr": 1e-3}, "train": train_cfg, "out_dir": str(root / "cls")})
    train(clip)
    train(cls)
    return {"corpus": corpus, "clip": root / "clip" / "checkpoints" / "last.pt",
            "cls": root / "cls" / "checkpoints" / "last.pt", "out": root / "weights"}


@pytest.fixture()
def shipped_here(runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    ship_tower(runs["clip"], "clip-test-tiny", "configs/clip/web_vit_tiny.yaml", runs["corpus"], runs["out"])
    ship_tower(runs["cls"], "imagenet-test-tiny", "configs/classify/web_vit_tiny.yaml", runs["corpus"], runs["out"])
    monkeypatch.setattr(shipped, "SHIPPED_DIR", runs["out"])
    return runs["out"]


def test_provenance_records_the_run_and_the_file(runs: dict[str, Path], shipped_here: Path) -> None:
    prov = json.loads((shipped_here / "clip-test-tiny.json").read_text())
    assert prov["sha256"] == sha256_file(shipped_here / "clip-test-tiny.safetensors")
    assert prov["architecture"] == "clipvil-vit-tiny" and prov["kind"] == "clip" and prov["steps"] == 3
    assert [r["step"] for r in prov["first_losses"]] == [1, 2, 3]
    log = [json.loads(line) for line in (runs["clip"].parent.parent / "logs" / "train.jsonl").read_text().splitlines()]
    assert prov["first_losses"][0]["loss"] == pytest.approx(next(r["loss"] for r in log if r.get("phase") == "train"),
                                                            abs=1e-4)
    assert set(prov["val"]) >= {"rsum"} and prov["corpus"]["spec"]["n_images"] == 100
    assert len(prov["corpus"]["shards_sha256"]) == 3 and prov["seed"] == 0
    state = load_file(str(shipped_here / "clip-test-tiny.safetensors"))
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    assert any(k.startswith("transformer.") for k in state)  # the text tower ships with a CLIP
    icls = load_file(str(shipped_here / "imagenet-test-tiny.safetensors"))
    assert icls and all(k.startswith("visual.") for k in icls)  # the classifier: its image tower only


def test_unused_token_rows_are_zero_and_used_ones_kept(runs: dict[str, Path], shipped_here: Path) -> None:
    shipped_table = load_file(str(shipped_here / "clip-test-tiny.safetensors"))["token_embedding.weight"]
    trained = torch.load(runs["clip"], weights_only=True)["model"]["token_embedding.weight"]
    used = corpus_token_ids(runs["corpus"], "train/web-{000000..000001}.tar")
    tok = open_clip.get_tokenizer("clipvil-vit-tiny")
    assert {int(t) for t in tok(["a red circle"])[0] if t} <= used
    nonzero = {int(i) for i in torch.nonzero(shipped_table.abs().sum(1)).flatten()}
    assert nonzero == used
    rows = sorted(used)
    assert torch.allclose(shipped_table[rows].float(), trained[rows], atol=1e-3)
    prov = json.loads((shipped_here / "clip-test-tiny.json").read_text())
    assert prov["zeroed_token_rows"] == trained.shape[0] - len(used)


def test_short_names_load_everywhere_weights_are_taken(runs: dict[str, Path], shipped_here: Path) -> None:
    by_name = build_encoder("clip-test-tiny")  # architecture + weights
    by_weights = build_encoder("clipvil-vit-tiny", weights="clip-test-tiny")
    assert by_name.weights_info.sha256 == by_weights.weights_info.sha256 != "random-seed0"
    trained = torch.load(runs["clip"], weights_only=True)["model"]
    ref = build_encoder("clipvil-vit-tiny")
    ref.visual.load_state_dict({k[len("visual."):]: v for k, v in trained.items() if k.startswith("visual.")})
    x = torch.rand(2, 3, 128, 128)
    got, want = by_name(x, [(128, 128)] * 2), ref(x, [(128, 128)] * 2)
    assert torch.allclose(got.feats, want.feats, atol=2e-2)  # the fp16 copy of the trained tower
    assert not torch.allclose(got.feats, build_encoder("clipvil-vit-tiny")(x, [(128, 128)] * 2).feats, atol=1e-2)
    clip = create_clip("clipvil-vit-tiny", weights="clip-test-tiny")  # the text tower too
    assert clip.encode_text(open_clip.get_tokenizer("clipvil-vit-tiny")(["a red circle"])).shape == (1, 128)
    with pytest.raises(WeightsError):
        create_clip("clipvil-vit-tiny", weights="imagenet-test-tiny")  # no text tower in a classifier
    with pytest.raises(ValueError, match="no shipped tower named 'clip-nope'.*clip-test-tiny"):
        shipped.shipped_tower("clip-nope")


def test_ship_tower_cli_refuses_other_runs_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       runs: dict[str, Path]) -> None:
    assert main(["ship-tower", "--checkpoint", str(tmp_path / "missing.pt"), "--name", "x", "--recipe", "r",
                 "--corpus", str(runs["corpus"]), "--out", str(tmp_path / "o")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_a_local_file_named_like_a_shipped_tower_wins(shipped_here: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clip-test-tiny").write_bytes(b"mine")
    assert shipped.resolve_weights("clip-test-tiny") == "clip-test-tiny"  # the user's file, not ours
    assert shipped.resolve_weights("imagenet-test-tiny") == shipped_here / "imagenet-test-tiny.safetensors"
