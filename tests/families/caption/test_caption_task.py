"""The captioning recipe end to end on a tiny run: XE then SCST, resume across the switch, the CIDEr-D reward
against pycocoevalcap, results files pycocotools reads, predict from a copied checkpoint."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocoevalcap.cider.cider import Cider

from clipvil.apps.predict import predict_caption, predict_vqa
from clipvil.data.tokenizers import CaptionVocab
from clipvil.engine import evaluate, load_config, train
from clipvil.engine.builders import build_task
from clipvil.families.caption.data import reward_sentence
from clipvil.families.caption.reward import CaptionReward, scst_baseline

REPO = Path(__file__).resolve().parents[3]
TINY = REPO / "tests/configs/caption_tiny.yaml"


def _overrides(world: Path, out: Path) -> list[str]:
    return [f"task.karpathy_file={world / 'world/captions/dataset_coco.json'}", f"task.features={world / 'store'}",
            f"out_dir={out}"]


def _records(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "logs/train.jsonl").read_text().splitlines()]


def _karpathy(world: Path) -> list[dict]:
    return json.loads((world / "world/captions/dataset_coco.json").read_text())["images"]


@pytest.fixture(scope="module")
def tiny_run(vqa_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("caption_run")
    train(load_config(TINY, _overrides(vqa_world, out)))
    return out


@pytest.fixture(scope="module")
def task(tiny_run: Path, vqa_world: Path, tmp_path_factory: pytest.TempPathFactory):  # -> CaptionTask
    """The tiny recipe's task with the trained weights of tiny_run (its greedy captions are real sentences)."""
    out = tmp_path_factory.mktemp("caption_task")
    cfg = load_config(TINY, [*_overrides(vqa_world, out), "task.scst_samples=1", "task.length_bucket_width=4"])
    built = build_task(cfg, torch.device("cpu"))
    state = torch.load(tiny_run / "checkpoints/last.pt", map_location="cpu", weights_only=False)
    built.model.load_state_dict(state["model"])
    return built


def test_vocabulary_holds_the_training_words_seen_more_than_five_times(tiny_run: Path, vqa_world: Path) -> None:
    counts = Counter(w for im in _karpathy(vqa_world) if im["split"] in ("train", "restval")
                     for s in im["sentences"] for w in s["tokens"])
    want = {w for w, n in counts.items() if n > 5}
    vocab = CaptionVocab.load(tiny_run / "caption_vocab.json")
    assert set(vocab.words[4:]) == want and vocab.max_length == 16
    saved = torch.load(tiny_run / "checkpoints/last.pt", map_location="cpu", weights_only=False)
    assert saved["artifacts"]["caption_vocab"]["words"] == list(vocab.words)


def test_first_xe_loss_is_near_ln_vocab_and_goes_down(tiny_run: Path) -> None:
    """At init the next-token distribution is close to uniform over V words: the token CE is about ln V."""
    n_words = len(CaptionVocab.load(tiny_run / "caption_vocab.json"))
    xe = [r["loss"] for r in _records(tiny_run) if r["phase"] == "xe"]
    assert len(xe) == 12
    assert xe[0] == pytest.approx(math.log(n_words), rel=0.15)
    assert xe[-1] < 0.6 * xe[0]


def test_golden_first_losses(tiny_run: Path) -> None:
    """Regression pin of the tiny recipe (seeded init, data order, caption choice, model, loss), recorded on
    torch 2.14 CPU; a change means the numerics of the XE path changed."""
    golden = [4.406203, 3.940098, 3.810697]
    assert [r["loss"] for r in _records(tiny_run)[:3]] == pytest.approx(golden, rel=1e-4)


def test_scst_runs_with_no_document_frequency_file_given(tiny_run: Path) -> None:
    """The official code needs data/coco-train-idxs.p (not shipped); here the df is made from the train split."""
    scst = [r for r in _records(tiny_run) if r["phase"] == "scst"]
    assert len(scst) == 6 and all({"reward", "baseline", "sample_len"} <= set(r) for r in scst)
    assert all(0.0 <= r["reward"] <= 10.0 and math.isfinite(r["loss"]) for r in scst)
    assert (tiny_run / "cider_df.npz").is_file() and not list(tiny_run.rglob("*idxs.p"))


def test_resume_across_the_xe_to_scst_switch_is_one_run(tiny_run: Path, vqa_world: Path, tmp_path: Path) -> None:
    quiet = ["train.eval_at_end=false"]
    first = train(load_config(TINY, [*_overrides(vqa_world, tmp_path), *quiet, "train.epochs=2"]))
    assert first.step == 12 and not (tmp_path / "cider_df.npz").exists()  # stopped at the switch, still XE
    train(load_config(TINY, [*_overrides(vqa_world, tmp_path), *quiet]))
    got, want = _records(tmp_path), _records(tiny_run)
    assert [r["phase"] for r in got] == [r["phase"] for r in want]
    assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in want], rel=1e-5, abs=1e-6)
    a = torch.load(tmp_path / "checkpoints/last.pt", map_location="cpu", weights_only=False)["model"]
    b = torch.load(tiny_run / "checkpoints/last.pt", map_location="cpu", weights_only=False)["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in b)


def test_scst_alone_from_an_xe_checkpoint(tiny_run: Path, vqa_world: Path, tmp_path: Path) -> None:
    """The documented phase-2 command: init_from + the XE run's vocabulary + a single scst phase."""
    cfg = load_config(TINY, [*_overrides(vqa_world, tmp_path), f"train.init_from={tiny_run}/checkpoints/last.pt",
                             f"task.vocab={tiny_run}/caption_vocab.json", "train.epochs=1", "train.max_steps=2",
                             "train.eval_at_end=false",
                             ("phases=[{name: scst, start_epoch: 0, optim: {name: adam, lr: 5.0e-6}, "
                              "schedule: {name: step}}]")])
    train(cfg)
    assert [r["phase"] for r in _records(tmp_path)] == ["scst", "scst"]
    assert (tmp_path / "caption_vocab.json").read_text() == (tiny_run / "caption_vocab.json").read_text()


def _reward_corpus(world: Path, vocab: CaptionVocab) -> tuple[list[int], list[tuple]]:
    train_images = [im for im in _karpathy(world) if im["split"] in ("train", "restval")]
    ids = [im["cocoid"] for im in train_images]
    return ids, [tuple(reward_sentence(vocab, tuple(s["tokens"])) for s in im["sentences"]) for im in train_images]


def test_reward_is_pycocoevalcap_cider_d_with_train_document_frequencies(tiny_run: Path, vqa_world: Path,
                                                                         tmp_path: Path) -> None:
    """pycocoevalcap takes df and log(N) from the set it scores: scoring one candidate for EVERY training image
    gives the train-reference df, so its score of a batch image must equal our reward for that candidate."""
    vocab = CaptionVocab.load(tiny_run / "caption_vocab.json")
    ids, corpus = _reward_corpus(vqa_world, vocab)
    rng = np.random.default_rng(0)
    batch = [0, 3, 7]  # three training images, two candidates each
    cands = [tuple(rng.integers(4, len(vocab), size=rng.integers(3, 10)).tolist()) + (vocab.eos_id,)
             for _ in range(len(batch) * 2)]
    cands[0] = corpus[0][1]  # a copy of a reference
    cands[1] = corpus[0][2][:4]  # a truncated one (no eos, as a sample that hit max_len)
    groups = np.repeat(np.arange(len(batch)), 2)
    reward = CaptionReward.from_corpus(corpus)
    got = reward.score(cands, [corpus[i] for i in batch], groups)
    for j in range(2):  # pycocoevalcap: one candidate per image, ours where given, a reference copy elsewhere
        res = {ids[i]: [" ".join(map(str, corpus[i][-1]))] for i in range(len(ids))}
        for b, i in enumerate(batch):
            res[ids[i]] = [" ".join(map(str, cands[2 * b + j]))]
        gts = {ids[i]: [" ".join(map(str, s)) for s in corpus[i]] for i in range(len(ids))}
        _, each = Cider().compute_score(gts, res)
        want = [each[ids.index(ids[i])] for i in batch]
        np.testing.assert_allclose(got[j::2], want, rtol=0, atol=1e-9)
    assert got[0] > got[1] > 0
    reward.save(tmp_path / "df.npz", "fp")  # the cache gives the same scorer back
    np.testing.assert_array_equal(CaptionReward.load(tmp_path / "df.npz", "fp").score(cands, [corpus[i] for i in batch],
                                                                                      groups), got)
    with pytest.raises(ValueError, match="delete the file"):
        CaptionReward.load(tmp_path / "df.npz", "other")


def test_reward_of_samples_sharing_no_ngram_with_any_reference_is_zero() -> None:
    reward = CaptionReward.from_corpus([[(5, 6, 2), (5, 7, 2)], [(8, 9, 2)]])
    np.testing.assert_array_equal(reward.score([(11, 12), (13,)], [[(5, 6, 2)], [(8, 9, 2)]], [0, 1]), [0.0, 0.0])


def test_baselines_by_hand() -> None:
    rewards = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 6.0]])
    np.testing.assert_allclose(scst_baseline(rewards, None), [[2.5, 2.0, 1.5], [3.0, 3.0, 0.0]])
    np.testing.assert_allclose(scst_baseline(rewards, np.array([0.5, 4.0])), [[0.5] * 3, [4.0] * 3])


def _sequence_logprob(model: torch.nn.Module, grid, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    rows_in = torch.cat([torch.ones_like(tokens[:, :1]), tokens[:, :-1]], dim=1)  # [R, L] bos + tokens
    logp = model(grid, rows_in).gather(2, tokens.unsqueeze(2)).squeeze(2)  # [R, L]
    return (logp * mask).sum(dim=1)  # [R]


def test_scst_step_raises_the_log_prob_of_a_sample_that_beats_the_baseline(task) -> None:
    """One sample per image, greedy baseline: after one SGD step on the SCST loss, the sample's log-probability
    moves in the direction of its advantage (reward - baseline); dropout is 0 in the tiny recipe."""
    task.set_phase("scst")
    data = task.dataset("train")
    seen = set()
    for attempt in range(20):
        torch.manual_seed(attempt)
        batch = task.collate([data[attempt % len(data)]])
        out = task.scst(batch)
        advantage = float((out.rewards - out.baseline)[0, 0])
        before = _sequence_logprob(task.model, batch["grid"], out.samples.tokens, out.samples.mask)
        torch.testing.assert_close(before, out.samples.logprobs.sum(dim=1))  # sampled = teacher-forced log-probs
        if advantage == 0.0 or np.sign(advantage) in seen:
            continue
        saved = {k: v.clone() for k, v in task.model.state_dict().items()}
        task.model.zero_grad()
        out.loss.backward()
        with torch.no_grad():
            for p in task.model.parameters():
                if p.grad is not None:
                    p -= 0.01 * p.grad
            after = _sequence_logprob(task.model, batch["grid"], out.samples.tokens, out.samples.mask)
        task.model.load_state_dict(saved)
        assert np.sign(float((after - before).detach())) == np.sign(advantage), advantage
        seen.add(np.sign(advantage))
        if len(seen) == 2:
            break
    assert seen == {1.0, -1.0}, "found no sample both above and below its greedy baseline"


def test_length_buckets_keep_each_batch_in_one_bucket(task) -> None:
    from clipvil.engine.task import BatchLayout

    data = task.dataset("train")
    sampler = task.batch_sampler("train", data, BatchLayout(4, 1, 0, 1, 0, True))
    lengths = data.lengths
    for indices in sampler:
        assert len({lengths[i] // 4 for i in indices}) == 1


def test_results_file_loads_in_pycocotools(tiny_run: Path, vqa_world: Path) -> None:
    from pycocotools.coco import COCO

    results = next((tiny_run / "eval").rglob("caption_results.json"))
    rows = json.loads(results.read_text())
    val_ids = {im["cocoid"] for im in _karpathy(vqa_world) if im["split"] == "val"}
    assert {r["image_id"] for r in rows} == val_ids and all(set(r) == {"image_id", "caption"} for r in rows)
    coco = COCO(str(vqa_world / "world/captions/captions_val2014.json"))
    assert set(coco.loadRes(str(results)).getImgIds()) == val_ids
    logged = json.loads((tiny_run / "logs/eval.jsonl").read_text().splitlines()[-1])
    assert {"Bleu_1", "Bleu_4", "ROUGE_L", "CIDEr", "n_images"} <= set(logged) and logged["n_images"] == len(val_ids)


def test_split_without_references_gets_the_server_file(tiny_run: Path, vqa_world: Path, tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    captions = json.loads((vqa_world / "world/captions/captions_test2015.json").read_text())
    info = tmp_path / "image_info_test2015.json"
    info.write_text(json.dumps({"info": {}, "images": captions["images"], "licenses": []}))
    cfg = load_config(TINY, [*_overrides(vqa_world, tmp_path / "run"), f"task.coco_files={{server: {info}}}",
                             "task.image_folders={server: test2015}"])
    metrics = evaluate(cfg, tiny_run / "checkpoints/last.pt", "server", tmp_path / "out")
    assert math.isnan(metrics["CIDEr"]) and metrics["n_images"] == len(captions["images"])
    server = tmp_path / "out/captions_test2015_clipvil_results.json"
    assert set(COCO(str(info)).loadRes(str(server)).getImgIds()) == {im["id"] for im in captions["images"]}


def test_predict_from_a_copied_checkpoint(tiny_run: Path, vqa_world: Path, tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere/model.pt"
    copy.parent.mkdir()
    shutil.copy(tiny_run / "checkpoints/last.pt", copy)
    image = next((vqa_world / "world/coco/val2014").glob("*.jpg"))
    result = predict_caption(copy, image, beam_size=2)
    vocab = set(CaptionVocab.load(tiny_run / "caption_vocab.json").words)
    assert set(result.caption.split()) <= vocab and 1 <= len(result.beams) <= 2
    assert result.beams[0] == (result.caption, pytest.approx(result.score))
    with pytest.raises(ValueError, match="not a VQA one; leave out --question"):
        predict_vqa(copy, image, "what is it?")
    out = subprocess.run([sys.executable, "-m", "clipvil.cli", "predict", "--checkpoint", str(copy), "--image",
                          str(image), "--beam-size", "1"], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    printed = json.loads(out.stdout)
    assert set(printed) == {"caption", "score", "beams"} and len(printed["beams"]) == 1
