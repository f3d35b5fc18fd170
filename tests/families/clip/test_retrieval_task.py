"""Zero-shot retrieval and zero-shot VQA: recalls against a by-hand argsort port, the Flickr30k Karpathy format,
`clipvil evaluate --weights`, and Table 7's "[question] [answer]" scoring."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from clip_testlib import tiny_world

from clipvil.cli import main
from clipvil.data.answers import build_vqa_answer_vocab
from clipvil.data.vqa import read_vqa
from clipvil.encoders.images import load_image
from clipvil.engine import config_from_dict
from clipvil.engine.builders import build_task
from clipvil.metrics.vqa import VqaReference, vqa_accuracy

MODEL = "clipvil-rn-tiny"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_world(tmp_path_factory.mktemp("retrieval_world") / "world")


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random open_clip checkpoint as open_clip's trainer saves it (module. prefix)."""
    path = tmp_path_factory.mktemp("weights") / "clip.pt"
    torch.manual_seed(11)
    model = open_clip.create_model(MODEL, pretrained=None)
    torch.save({"epoch": 1, "name": MODEL, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}},
               path)
    return path


def _config(task: dict, out: Path):
    return config_from_dict({"task": task, "train": {"batch_size": 4, "max_steps": 1, "eval_splits": ["test"],
                                                     "tensorboard": False}, "out_dir": str(out)})


def _recalls_by_argsort(sim: np.ndarray, owner: np.ndarray) -> dict[str, float]:
    """The usual implementation (argsort per query), written here as the reference."""
    i2t = [min(np.where(np.argsort(-row) == t)[0][0] for t in np.where(owner == i)[0]) for i, row in enumerate(sim)]
    t2i = [np.where(np.argsort(-sim[:, t]) == owner[t])[0][0] for t in range(sim.shape[1])]
    return {f"{d}_R@{k}": 100.0 * float(np.mean(np.asarray(r) < k)) for d, r in (("i2t", i2t), ("t2i", t2i))
            for k in (1, 5, 10)}


def test_karpathy_retrieval_recalls_match_a_by_hand_computation(world: Path, weights: Path, tmp_path: Path) -> None:
    data = {"format": "karpathy", "root": str(world / "captions"), "image_root": str(world / "coco"),
            "splits": {"test": "test"}, "captions_per_image": 3}
    cfg = _config({"name": "retrieval", "model": MODEL, "weights": str(weights), "data": data}, tmp_path)
    assert main(["evaluate", "--weights", str(weights), "--out", str(tmp_path / "eval"), *_cli(cfg, tmp_path)]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    # by hand: the test images of the Karpathy file, their first 3 captions, open_clip's own preprocessing
    karpathy = json.loads((world / "captions" / "dataset_coco.json").read_text())["images"]
    test = [im for im in karpathy if im["split"] == "test"]
    model, _, preprocess = open_clip.create_model_and_transforms(MODEL, pretrained=str(weights))
    model.eval()
    with torch.no_grad():
        pixels = torch.stack([preprocess(load_image(world / "coco" / im["filepath"] / im["filename"])) for im in test])
        img = model.encode_image(pixels, normalize=True).numpy()
        captions = [s["raw"] for im in test for s in im["sentences"][:3]]
        txt = model.encode_text(open_clip.get_tokenizer(MODEL)(captions), normalize=True).numpy()
    owner = np.repeat(np.arange(len(test)), 3)
    expected = _recalls_by_argsort(img @ txt.T, owner)
    assert (metrics["n_images"], metrics["n_texts"]) == (len(test), 3 * len(test))
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value), key
    ranks = json.loads((tmp_path / "eval" / "ranks.json").read_text())
    assert len(ranks["i2t"]) == len(test) and ranks["text_to_image"] == owner.tolist()


def _cli(cfg, tmp_path: Path) -> list[str]:
    from clipvil.engine import save_config

    save_config(cfg, tmp_path / "retrieval.yaml")
    return [str(tmp_path / "retrieval.yaml")]


def test_flickr30k_karpathy_format(world: Path, weights: Path, tmp_path: Path) -> None:
    images = sorted((world / "coco" / "val2014").glob("*.jpg"))[:3]
    folder = tmp_path / "flickr30k-images"
    folder.mkdir()
    entries = []
    for i, src in enumerate(images):
        shutil.copy(src, folder / f"{1000 + i}.jpg")
        entries.append({"filename": f"{1000 + i}.jpg", "imgid": i, "split": "test" if i < 2 else "train",
                        "sentences": [{"raw": f"caption {j} of image {i}", "tokens": []} for j in range(6)]})
    (tmp_path / "dataset_flickr30k.json").write_text(json.dumps({"dataset": "flickr30k", "images": entries}))
    data = {"format": "flickr30k", "root": str(tmp_path), "karpathy_file": "dataset_flickr30k.json",
            "image_root": str(folder), "splits": {"test": "test"}, "captions_per_image": 5}
    task = build_task(_config({"name": "retrieval", "model": MODEL, "weights": str(weights), "data": data},
                              tmp_path), torch.device("cpu"))
    test = task.dataset("test")
    assert len(test) == 2 and [len(c) for c in test.captions] == [5, 5]  # 5 of the 6 captions of each test image
    assert test.captions[1][0] == "caption 0 of image 1"
    metrics = task.evaluate([task.collate([test[0], test[1]])], "test", None)
    assert metrics["n_texts"] == 10.0 and 0 <= metrics["rsum"] <= 600


def test_zero_shot_vqa_scores_question_answer_texts(world: Path, weights: Path, tmp_path: Path) -> None:
    task_cfg = {"name": "zeroshot_vqa", "model": MODEL, "weights": str(weights), "data_dir": str(world / "vqa"),
                "image_root": str(world / "coco"), "templates": ["plain", "photo"]}
    cfg = config_from_dict({"task": task_cfg, "train": {"batch_size": 8, "max_steps": 1, "eval_splits": ["val"],
                                                        "tensorboard": False}, "out_dir": str(tmp_path)})
    task = build_task(cfg, torch.device("cpu"))
    task.eval()
    val = task.dataset("val")
    metrics = task.evaluate([task.collate([val[i] for i in range(len(val))])], "val", tmp_path)
    # by hand: every "question answer" text of every train answer, the closest one to the image wins
    vqa = world / "vqa"
    answers = list(build_vqa_answer_vocab(read_vqa(vqa / "v2_OpenEnded_mscoco_train2014_questions.json",
                                                   vqa / "v2_mscoco_train2014_annotations.json").examples, 1).label2ans)
    split = read_vqa(vqa / "v2_OpenEnded_mscoco_val2014_questions.json", vqa / "v2_mscoco_val2014_annotations.json")
    model, _, preprocess = open_clip.create_model_and_transforms(MODEL, pretrained=str(weights))
    tok = open_clip.get_tokenizer(MODEL)
    model.eval()
    preds = {}
    with torch.no_grad():
        for ex in split.examples:
            image = preprocess(load_image(world / "coco" / "val2014" / split.image_filename(ex.image_id)))[None]
            img = model.encode_image(image, normalize=True)[0]  # [D]
            txt = model.encode_text(tok([f"{ex.question} {a}" for a in answers]), normalize=True)  # [A, D]
            preds[ex.question_id] = answers[int((txt @ img).argmax())]
    refs = {e.question_id: VqaReference(e.answers, e.question_type, e.answer_type) for e in split.examples}
    expected = vqa_accuracy(preds, refs)
    assert metrics["accuracy"] == pytest.approx(expected.overall) == metrics["plain/accuracy"]
    for kind, value in expected.per_answer_type.items():
        assert metrics[f"plain/type/{kind}"] == pytest.approx(value)
    saved = {r["question_id"]: r["answer"] for r in json.loads((tmp_path / "vqa_results_plain.json").read_text())}
    assert saved == preds and "photo/accuracy" in metrics and metrics["n_answers"] == len(answers)
