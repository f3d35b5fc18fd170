"""CLIP-ViL_p fine-tuning on the synthetic world: VQA / GQA / SNLI-VE / NLVR2 runs with official results files
rescored independently, first losses at chance, the QA head's answer surgery from a pre-training checkpoint,
all visual tokens at fine-tuning, the NLVR2 pair model, and CLIP-ViL+ (CLIP's text tower)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from vl_world import tiny_config

from clipvil.common.atomic import atomic_write
from clipvil.data.lxmert import convert_lxmert_answer
from clipvil.data.synthetic import make_data
from clipvil.data.synthetic.manifest import Manifest
from clipvil.data.synthetic.nlvr2 import write_nlvr2_world
from clipvil.engine import config_from_dict, train
from clipvil.engine.builders import build_task
from clipvil.engine.task import BatchLayout
from clipvil.metrics.accuracy import gqa_accuracy, gqa_answers_from_questions, snli_ve_accuracy
from clipvil.metrics.nlvr2 import nlvr2_scores, read_nlvr2_predictions
from clipvil.metrics.vqa import predictions_from_results, references_from_annotations, vqa_accuracy

SPLITS = {
    "vqa": ("vqa", "coco", {"train": ["v2_OpenEnded_mscoco_train2014_questions.json",
                                      "v2_mscoco_train2014_annotations.json"],
                            "val": ["v2_OpenEnded_mscoco_val2014_questions.json",
                                    "v2_mscoco_val2014_annotations.json"]}),
    "gqa": ("gqa", "gqa/images", {"train": ["train_balanced_questions.json"], "val": ["val_balanced_questions.json"]}),
    "snli_ve": ("snli_ve", "snli_ve/flickr30k_images",
                {"train": ["snli_ve_train.jsonl"], "val": ["snli_ve_dev.jsonl"]}),
    "nlvr2": ("nlvr2", ".", {"train": ["train.json"], "val": ["dev.json"]}),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ft_world") / "world"
    make_data(root, 40, seed=5, image_size=64, progress=False, workers=1)
    write_nlvr2_world(Manifest.load(root).spec, root)
    return root


def finetune_config(world: Path, out: Path, dataset: str, *overrides: str):
    """tests/configs/vl_finetune_tiny.yaml on one dataset of the world."""
    sub, images, splits = SPLITS[dataset]
    data = tiny_config("finetune")
    data["task"].update(dataset=dataset, data_dir=str(world / sub), image_root=str(world / images), splits=splits)
    data["out_dir"] = str(out)
    return config_from_dict(data, list(overrides))


def _first(run: Path) -> dict:
    return json.loads((run / "logs/train.jsonl").read_text().splitlines()[0])


def _eval(run: Path) -> tuple[dict, Path]:
    logged = json.loads((run / "logs/eval.jsonl").read_text().splitlines()[-1])
    return logged, max((run / "eval").glob("step*/val"))


def test_vqa_run_writes_the_official_results_file(world: Path, tmp_path: Path) -> None:
    train(finetune_config(world, tmp_path, "vqa"))
    n_answers = len(json.loads((tmp_path / "answer_vocab.json").read_text()))
    assert _first(tmp_path)["loss"] == pytest.approx(n_answers * math.log(2), rel=0.1)  # BCE at logits ≈ 0
    logged, out = _eval(tmp_path)
    results = json.loads((out / "vqa_results_val.json").read_text())
    assert results and all(set(r) == {"question_id", "answer"} for r in results)
    questions = json.loads((world / "vqa/v2_OpenEnded_mscoco_val2014_questions.json").read_text())["questions"]
    assert [r["question_id"] for r in results] == [q["question_id"] for q in questions]  # every question, in order
    refs = references_from_annotations(
        json.loads((world / "vqa/v2_mscoco_val2014_annotations.json").read_text())["annotations"])
    assert vqa_accuracy(predictions_from_results(results), refs).overall == pytest.approx(logged["accuracy"])


def test_gqa_run_writes_the_submission_format(world: Path, tmp_path: Path) -> None:
    train(finetune_config(world, tmp_path, "gqa"))
    logged, out = _eval(tmp_path)
    rows = json.loads((out / "gqa_predictions_val.json").read_text())
    assert rows and all(set(r) == {"questionId", "prediction"} for r in rows)
    answers, types = gqa_answers_from_questions(json.loads((world / "gqa/val_balanced_questions.json").read_text()))
    preds = {r["questionId"]: r["prediction"] for r in rows}
    assert gqa_accuracy(preds, answers, types)["accuracy"] == pytest.approx(logged["accuracy"])


def test_snli_ve_run_is_three_way_and_rescored(world: Path, tmp_path: Path) -> None:
    train(finetune_config(world, tmp_path, "snli_ve"))
    # CE over 3 classes at init: the head's LayerNorm → Linear(2H, 3) (std 0.02) gives logits of std
    # 0.02·sqrt(2H) ≈ 0.55, which adds ≈ σ²/2 to ln 3; a batch of 8 adds noise
    assert math.log(3) - 0.1 < _first(tmp_path)["loss"] < math.log(3) + 0.4
    logged, out = _eval(tmp_path)
    rows = json.loads((out / "snli_ve_predictions.json").read_text())
    gold = {}
    for line in (world / "snli_ve/snli_ve_dev.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["gold_label"] != "-":
            gold[row["pairID"]] = row["gold_label"]
    preds = {r["pairID"]: r["prediction"] for r in rows}
    assert snli_ve_accuracy(preds, gold)["accuracy"] == pytest.approx(logged["accuracy"])


def test_nlvr2_pair_forward_and_official_predictions(world: Path, tmp_path: Path) -> None:
    train(finetune_config(world, tmp_path, "nlvr2"))
    logged, out = _eval(tmp_path)
    with (out / "nlvr2_predictions.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows and all(len(r) == 2 and r[1] in ("True", "False") for r in rows)  # identifier,prediction
    labels = {json.loads(x)["identifier"]: json.loads(x)["label"] == "True"
              for x in (world / "nlvr2/dev.json").read_text().splitlines()}
    scores = nlvr2_scores(read_nlvr2_predictions(out / "nlvr2_predictions.csv"), labels)
    assert (scores.accuracy, scores.consistency) == pytest.approx((logged["accuracy"], logged["consistency"]))

    task = build_task(finetune_config(world, tmp_path / "pair", "nlvr2"), torch.device("cpu"))
    data = task.dataset("val")
    batch = task.collate([data[i] for i in range(3)])
    assert batch["pixels"].shape[:2] == (3, 2) and len(batch["content_hw"]) == 6  # [B, 2, 3, H, W]
    seen: list[int] = []
    orig = task.model.transformer.joint

    def spy(text, att, visual, valid, index):
        seen.append(visual.shape[1])
        return orig(text, att, visual, valid, index)

    task.model.transformer.joint = spy  # type: ignore[method-assign]
    task.eval()
    with torch.no_grad():
        logits = task.logits(batch)
        swapped = dict(batch, pixels=batch["pixels"].flip(1),
                       content_hw=[hw for i in range(3) for hw in batch["content_hw"][2 * i: 2 * i + 2][::-1]])
        other = task.logits(swapped)
    assert logits.shape == (3, 2)
    assert seen[0] == 2 * 6  # both images' 2x3 grids, every cell (no sampling at fine-tuning)
    assert not torch.allclose(logits, other)  # the image-index embedding tells left from right


def _fake_pretrain_checkpoint(world: Path, path: Path) -> dict:
    """A vl_pretrain model (MLM + ITM + QA over the world's LXMERT table) saved in the engine's format."""
    cfg = config_from_dict({
        "task": {"name": "vl_pretrain", "encoder": "clipvil-rn-tiny", "data_dir": str(world / "lxmert"),
                 "image_root": str(world / "coco"), "splits": {"train": ["mscoco_train.json"]},
                 "objectives": ["mlm", "itm", "qa"], "model_overrides": {"layers": 1}, "image_size": [64, 96]},
        "train": {"max_steps": 1, "seed": 7}, "out_dir": str(path.parent)})
    task = build_task(cfg, torch.device("cpu"))
    with torch.no_grad():
        task.model.qa.logit_fc[3].weight.normal_()  # distinct rows to trace
    state = {"format": "clipvil-train", "version": 1, "model": task.model.state_dict(), "artifacts": task.artifacts()}
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    return state


def test_qa_head_is_initialised_from_the_pretraining_answer_table(world: Path, tmp_path: Path) -> None:
    pre = _fake_pretrain_checkpoint(world, tmp_path / "pre.pt")
    task = build_task(finetune_config(world, tmp_path / "ft", "vqa", f"task.pretrained={tmp_path / 'pre.pt'}"),
                      torch.device("cpu"))
    table = {a: i for i, a in enumerate(pre["artifacts"]["answers"])}
    old, new = pre["model"]["qa.logit_fc.3.weight"], task.model.qa.logit_fc[3].weight.detach()
    hits = 0
    for i, answer in enumerate(task.answers.label2ans):
        j = table.get(convert_lxmert_answer(answer))
        if j is None:
            assert not new[i].any()  # answers the table lacks start at 0 (as the reference)
        else:
            hits += 1
            assert torch.equal(new[i], old[j])
    assert hits > 0
    own = task.model.state_dict()
    assert all(torch.equal(own[k], pre["model"][k]) for k in own if k.startswith(("transformer.", "visual.")))


def test_clip_text_tower_variant_trains(world: Path, tmp_path: Path) -> None:
    """CLIP-ViL+: the joint encoder is CLIP's text transformer over CLIP BPE ids ([MASK] / [PAD] appended)."""
    cfg = config_from_dict({
        "task": {"name": "vl_pretrain", "encoder": "clipvil-rn-tiny", "text_tower": "clip",
                 "data_dir": str(world / "lxmert"), "image_root": str(world / "coco"),
                 "splits": {"train": ["mscoco_train.json"]}, "model_overrides": {"visual_tokens": 4},
                 "image_size": [64, 96]},
        "train": {"batch_size": 8, "max_steps": 1, "log_every": 1, "progress": False, "tensorboard": False,
                  "eval_splits": []}, "out_dir": str(tmp_path)})
    train(cfg)
    first = _first(tmp_path)
    assert math.log(49410) - 0.2 < first["loss_mlm"] < math.log(49410) + 1.5  # ≈ uniform over 49408 + 2 ids
    assert first["loss_itm"] == pytest.approx(math.log(2), abs=0.1)
    task = build_task(cfg, torch.device("cpu"))
    assert type(task.model.transformer).__name__ == "ClipTextVLTransformer"
    assert task.model.mlm.decoder.weight is task.model.transformer.token_embedding.weight  # tied
    data = task.dataset("train")
    keys = next(iter(task.batch_sampler("train", data, BatchLayout(8, 1, 0, 1, 0, True))))
    batch = task.collate([data[k] for k in keys])
    assert int(batch["input_ids"][0, 0]) == task.codec.tokenizer.sot_token_id
    assert bool((batch["input_ids"][batch["attention_mask"] == 0] == task.codec.pad_id).all())
