"""Image–text retrieval metrics (COCO / Flickr30k 5k / 1k test protocols): recall at k in both directions,
and the median / mean rank, in percent where a recall.

Input: a similarity matrix ``sim`` [n_images, n_texts] (higher = more similar; e.g. cosine similarities of
CLIP embeddings) and ``text_to_image`` [n_texts], the image each caption describes (COCO / Flickr: 5
captions an image, so several texts point at one image).

- **image → text** (text retrieval): an image's rank is the rank of the best-ranked of its captions among
  all texts; R@k = percentage of images with rank <= k.
- **text → image** (image retrieval): a caption's rank is the rank of its image among all images;
  R@k = percentage of texts with rank <= k.

Ranks start at 1. **Ties count against the query**: rank = 1 + the number of *wrong* candidates whose
similarity is greater than or equal to that of the (best) correct one. So the result does not depend on
the order of the candidates, and a constant similarity matrix scores the worst, not the best, recall.
(Implementations that argsort break ties by position instead; on real float similarities ties are rare
and the two agree.) Other captions of the same image never push an image's rank down.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_KS: tuple[int, ...] = (1, 5, 10)
_CHUNK = 1024  # rows of the similarity matrix compared at a time (bounds the temporary masks)


def _check(sim: np.ndarray, text_to_image: np.ndarray) -> None:
    if sim.ndim != 2:
        raise ValueError(f"retrieval: similarities must be [n_images, n_texts], got shape {sim.shape}")
    n_images, n_texts = sim.shape
    if n_images == 0 or n_texts == 0:
        raise ValueError(f"retrieval: empty similarity matrix {sim.shape}")
    if text_to_image.shape != (n_texts,):
        raise ValueError(f"retrieval: text_to_image has {text_to_image.shape[0]} entries for {n_texts} texts")
    bad = np.flatnonzero((text_to_image < 0) | (text_to_image >= n_images))
    if bad.size:
        raise ValueError(
            f"retrieval: text {int(bad[0])} points at image {int(text_to_image[bad[0]])}, "
            f"outside 0..{n_images - 1}"
        )
    if not np.isfinite(sim).all():
        row, col = np.argwhere(~np.isfinite(sim))[0]
        raise ValueError(f"retrieval: similarity [{row}, {col}] is {sim[row, col]} (must be finite)")
    counts = np.bincount(text_to_image, minlength=n_images)
    if (counts == 0).any():
        raise ValueError(
            f"retrieval: image {int(np.flatnonzero(counts == 0)[0])} has no caption among the texts"
        )


def retrieval_ranks(
    sim: np.ndarray, text_to_image: Sequence[int] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(image→text ranks [n_images], text→image ranks [n_texts]), 1-based, ties against the query."""
    s = np.asarray(sim)  # [I, T]; float32 stays float32 (a 5k x 25k COCO matrix is 500 MB already)
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float64)
    t2i = np.asarray(text_to_image, dtype=np.int64)  # [T]
    _check(s, t2i)
    n_images, n_texts = s.shape
    i2t_ranks = np.empty(n_images, dtype=np.int64)
    for lo in range(0, n_images, _CHUNK):
        block = s[lo : lo + _CHUNK]  # [b, T]
        positive = t2i[None, :] == np.arange(lo, lo + block.shape[0])[:, None]  # [b, T]
        best = np.where(positive, block, -np.inf).max(axis=1)  # [b]
        i2t_ranks[lo : lo + block.shape[0]] = 1 + ((block >= best[:, None]) & ~positive).sum(axis=1)
    t2i_ranks = np.empty(n_texts, dtype=np.int64)
    for lo in range(0, n_texts, _CHUNK):
        block = s[:, lo : lo + _CHUNK]  # [I, b]
        own = t2i[lo : lo + block.shape[1]]  # [b]
        score = block[own, np.arange(block.shape[1])]  # [b]
        t2i_ranks[lo : lo + block.shape[1]] = (block >= score[None, :]).sum(
            axis=0
        )  # itself counts once: 1 + wrong
    return i2t_ranks, t2i_ranks


def retrieval_recalls(
    sim: np.ndarray, text_to_image: Sequence[int] | np.ndarray, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """{"i2t_R@k", "t2i_R@k" (percent) for k in ks, "i2t_median_rank", "i2t_mean_rank", "t2i_median_rank",
    "t2i_mean_rank", "rsum" (sum of all the recalls), "n_images", "n_texts"}.

    sim: [n_images, n_texts] similarities (a numpy array; pass ``tensor.cpu().numpy()``);
    text_to_image: for each text, the row of its image.
    """
    if not ks or any(int(k) < 1 for k in ks):
        raise ValueError(f"retrieval: ks must be positive integers, got {list(ks)}")
    i2t, t2i = retrieval_ranks(sim, text_to_image)
    out: dict[str, float] = {}
    for direction, ranks in (("i2t", i2t), ("t2i", t2i)):
        for k in ks:
            out[f"{direction}_R@{k}"] = 100.0 * float((ranks <= k).mean())
    for direction, ranks in (("i2t", i2t), ("t2i", t2i)):
        out[f"{direction}_median_rank"] = float(np.median(ranks))
        out[f"{direction}_mean_rank"] = float(ranks.mean())
    out["rsum"] = sum(v for key, v in out.items() if "_R@" in key)
    out["n_images"], out["n_texts"] = float(len(i2t)), float(len(t2i))
    return out


__all__ = ["DEFAULT_KS", "retrieval_ranks", "retrieval_recalls"]
