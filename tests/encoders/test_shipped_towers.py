"""The reference towers shipped in the package: each file is the one its provenance records, loads by short
name, and was made from a corpus this code still generates byte for byte; its recipe reproduces the recorded
first losses (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from clipvil import recipes
from clipvil.data.synthetic.corpus import CorpusSpec, _write_shard, make_corpus
from clipvil.encoders import build_encoder
from clipvil.encoders.shipped import shipped_names, shipped_tower
from clipvil.encoders.weights import sha256_file
from clipvil.families.clip.model import create_clip

EXPECTED = {"clip-rn-tiny", "clip-vit-tiny", "imagenet-rn-tiny", "imagenet-vit-tiny"}


def test_the_reference_towers_are_shipped() -> None:
    assert EXPECTED <= set(shipped_names())


@pytest.mark.parametrize("name", sorted(shipped_names()))
def test_shipped_file_matches_its_provenance_and_loads_by_name(name: str) -> None:
    tower = shipped_tower(name)
    prov = tower.provenance
    assert sha256_file(tower.weights) == prov["sha256"]
    assert recipes.find(prov["recipe"]).is_file()  # the recipe that reproduces it ships too
    assert prov["steps"] > 0 and prov["first_losses"] and prov["val"]
    state = load_file(str(tower.weights))
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    enc = build_encoder(name)
    assert enc.name == prov["architecture"] and enc.weights_info.sha256 == prov["sha256"]
    if tower.kind == "clip":
        assert prov["val"]["rsum"] > 100  # retrieval on 1000 held-out corpus images: chance is ~3
        assert create_clip(prov["architecture"], weights=name).logit_scale.exp().item() > 1.0
    else:
        assert prov["val"]["accuracy"] > 100 / 12  # above chance of the 12 object classes


def test_a_shipped_name_in_a_configs_weights_field_stays_a_name_and_loads(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from clipvil.engine.config import load_config

    monkeypatch.chdir(tmp_path)  # not made absolute against the working directory (./clip-vit-tiny)
    cfg = load_config(recipes.find("retrieval/synthetic.yaml"), ["task.model=clipvil-vit-tiny",
                                                                 "task.weights=clip-vit-tiny"])
    assert cfg.task.weights == Path("clip-vit-tiny")
    reference = shipped_tower("clip-vit-tiny")
    model = create_clip("clipvil-vit-tiny", weights=cfg.task.weights)
    assert torch.equal(model.logit_scale.detach(), load_file(str(reference.weights))["logit_scale"].float())
    (tmp_path / "clip-vit-tiny").write_bytes(b"")  # a local file of that name wins over the shipped tower
    local = load_config(recipes.find("retrieval/synthetic.yaml"), ["task.weights=clip-vit-tiny"])
    assert local.task.weights == tmp_path / "clip-vit-tiny"


def test_the_corpus_generator_reproduces_the_shards_the_towers_saw(tmp_path: Path) -> None:
    prov = shipped_tower("clip-vit-tiny").provenance["corpus"]
    spec = CorpusSpec(**{k: v for k, v in prov["spec"].items()})
    info = _write_shard(spec, tmp_path / "web-000000.tar", spec.shards("val")[0])
    assert info["sha256"] == prov["shards_sha256"]["val/web-000000.tar"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole pre-training corpus, made anew (~5 min on 2 cores); its shards must be the recorded ones."""
    prov = shipped_tower("clip-vit-tiny").provenance["corpus"]
    root = tmp_path_factory.mktemp("corpus") / "corpus"
    made = make_corpus(root, CorpusSpec(**prov["spec"]), progress=False)
    assert made["shards_sha256"] == prov["shards_sha256"]
    return root


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_recipe_reproduces_the_recorded_first_losses(name: str, corpus: Path, tmp_path: Path) -> None:
    from clipvil.engine.config import load_config
    from clipvil.engine.loop import train

    prov = shipped_tower(name).provenance
    first = prov["first_losses"][0]
    key = "task.data.root" if prov["kind"] == "clip" else "task.root"
    cfg = load_config(recipes.find(prov["recipe"]), [f"{key}={corpus}", f"out_dir={tmp_path / 'run'}",
                                                     f"train.epochs={prov['epochs']}",
                                                     f"train.max_steps={first['step']}", "train.progress=false"])
    train(cfg)
    log = [json.loads(line) for line in (tmp_path / "run" / "logs" / "train.jsonl").read_text().splitlines()]
    got = next(r for r in log if r.get("phase") == "train" and r["step"] == first["step"])
    assert got["loss"] == pytest.approx(first["loss"], rel=2e-3)
