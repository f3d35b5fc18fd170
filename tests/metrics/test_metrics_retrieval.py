"""Retrieval recalls and ranks on hand-made similarity matrices (values worked out by hand in comments)."""

from __future__ import annotations

import numpy as np
import pytest

from clipvil.metrics import retrieval
from clipvil.metrics.retrieval import retrieval_ranks, retrieval_recalls

# 3 images, 2 captions each (text j describes image j // 2)
T2I = [0, 0, 1, 1, 2, 2]
SIM = np.array(
    [
        [
            0.2,
            0.5,
            0.9,
            0.1,
            0.5,
            0.0,
        ],  # best own 0.5 (t1); wrong >= 0.5: t2 (0.9), t4 (0.5, a tie) -> rank 3
        [
            0.3,
            0.3,
            0.6,
            0.2,
            0.1,
            0.7,
        ],  # best own 0.6 (t2); wrong >= 0.6: t5 (0.7)                  -> rank 2
        [
            0.0,
            0.0,
            0.0,
            0.0,
            0.4,
            0.3,
        ],  # best own 0.4 (t4); nothing wrong above                      -> rank 1
    ]
)
# text -> image, column by column: own score vs the other images' (>= counts against)
#  t0: own 0.2, img1 0.3 above -> 2 | t1: own 0.5 -> 1 | t2: own 0.6, img0 0.9 -> 2 | t3: own 0.2 -> 1
#  t4: own 0.4, img0 0.5 -> 2      | t5: own 0.3, img1 0.7 -> 2


def test_hand_made_ranks() -> None:
    i2t, t2i = retrieval_ranks(SIM, T2I)
    assert i2t.tolist() == [3, 2, 1]
    assert t2i.tolist() == [2, 1, 2, 1, 2, 2]


def test_hand_made_recalls() -> None:
    out = retrieval_recalls(SIM, T2I, ks=(1, 2, 5))
    assert out["i2t_R@1"] == pytest.approx(100 / 3)
    assert out["i2t_R@2"] == pytest.approx(200 / 3)
    assert out["i2t_R@5"] == 100.0
    assert out["t2i_R@1"] == pytest.approx(100 * 2 / 6)
    assert out["t2i_R@2"] == 100.0
    assert out["i2t_median_rank"] == 2.0 and out["i2t_mean_rank"] == 2.0
    assert out["t2i_median_rank"] == 2.0 and out["t2i_mean_rank"] == pytest.approx(10 / 6)
    assert out["rsum"] == pytest.approx(100 / 3 + 200 / 3 + 100 + 100 / 3 + 100 + 100)
    assert (out["n_images"], out["n_texts"]) == (3.0, 6.0)
    assert set(retrieval_recalls(SIM, T2I)) >= {"i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@10"}


def test_ties_count_against_the_query() -> None:
    """A constant matrix is the worst case: every wrong candidate ties with the right one."""
    out = retrieval_recalls(np.full((2, 4), 0.5), [0, 0, 1, 1], ks=(1, 2, 3))
    # image 0: wrong texts t2, t3 tie -> rank 3; its own other caption does not count
    assert retrieval_ranks(np.full((2, 4), 0.5), [0, 0, 1, 1])[0].tolist() == [3, 3]
    assert out["i2t_R@1"] == 0.0 and out["i2t_R@2"] == 0.0 and out["i2t_R@3"] == 100.0
    assert out["t2i_R@1"] == 0.0 and out["t2i_R@2"] == 100.0  # one wrong image ties -> rank 2


def test_two_captions_of_one_image_do_not_hurt_each_other() -> None:
    sim = np.array([[0.9, 0.9, 0.1], [0.2, 0.2, 0.8]])
    assert retrieval_ranks(sim, [0, 0, 1])[0].tolist() == [1, 1]


def _argsort_port(sim: np.ndarray, t2i: list[int]) -> tuple[list[int], list[int]]:
    """The usual VSE++ / CLIP-benchmark style ranking by argsort (agrees when there are no ties)."""
    t2i_arr = np.asarray(t2i)
    i2t = []
    for i in range(sim.shape[0]):
        order = np.argsort(-sim[i], kind="stable")
        i2t.append(1 + min(int(np.where(order == t)[0][0]) for t in np.flatnonzero(t2i_arr == i)))
    ti = []
    for t in range(sim.shape[1]):
        order = np.argsort(-sim[:, t], kind="stable")
        ti.append(1 + int(np.where(order == t2i[t])[0][0]))
    return i2t, ti


def test_agrees_with_argsort_ranking_without_ties_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retrieval, "_CHUNK", 7)  # force several chunks in both directions
    rng = np.random.default_rng(0)
    t2i = [i // 5 for i in range(60)]  # 12 images x 5 captions
    sim = rng.standard_normal((12, 60))
    sim[np.arange(60) // 5, np.arange(60)] += 1.5  # make it better than chance
    i2t, ti = retrieval_ranks(sim, t2i)
    want_i2t, want_t2i = _argsort_port(sim, t2i)
    assert i2t.tolist() == want_i2t and ti.tolist() == want_t2i


@pytest.mark.parametrize(
    ("sim", "t2i", "message"),
    [
        (np.zeros(3), [0], r"must be \[n_images, n_texts\]"),
        (np.zeros((2, 3)), [0, 1], "text_to_image has 2 entries for 3 texts"),
        (np.zeros((2, 3)), [0, 1, 2], "text 2 points at image 2, outside 0..1"),
        (np.zeros((3, 3)), [0, 1, 1], "image 2 has no caption"),
        (np.array([[0.0, np.nan], [0.0, 0.0]]), [0, 1], r"similarity \[0, 1\] is nan"),
        (np.zeros((0, 0)), [], "empty similarity matrix"),
    ],
)
def test_bad_input_is_a_clear_error(sim: np.ndarray, t2i: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        retrieval_recalls(sim, t2i)


def test_bad_ks() -> None:
    with pytest.raises(ValueError, match="ks must be positive"):
        retrieval_recalls(SIM, T2I, ks=(0,))


def test_float32_and_integer_inputs() -> None:
    i2t, t2i = retrieval_ranks(SIM.astype(np.float32), T2I)
    assert i2t.tolist() == [3, 2, 1] and t2i.tolist() == [2, 1, 2, 1, 2, 2]
    assert retrieval_ranks(np.array([[2, 1], [1, 2]]), [0, 1])[0].tolist() == [1, 1]
