"""Zero-shot scoring with CLIP embeddings: pick, for each image, the candidate text it matches best
(the paper's zero-shot VQA, Table 7: the candidates are "[question] [answer]" texts, one per answer).

Pure functions over numpy arrays: the embeddings are computed elsewhere (``model.encode_image`` /
``model.encode_text``; pass ``tensor.cpu().numpy()``). Scores are cosine similarities — both sides are
L2-normalised here, as CLIP does before its logits (``normalize=False`` takes them as given). Ties go to the
lowest candidate index (numpy's argmax), so list the candidates in a fixed order (e.g. the answer
vocabulary's).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _unit(x: np.ndarray, what: str) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    if (norm == 0).any():
        raise ValueError(f"zero_shot: a {what} embedding is all zeros (cannot normalise)")
    return x / norm


def zero_shot_scores(image_emb: np.ndarray, text_emb: np.ndarray, normalize: bool = True) -> np.ndarray:
    """[B, A] similarities of each image to its candidates.

    image_emb: [B, D]. text_emb: [B, A, D] (each image's own candidates, e.g. its question joined with each
    answer) or [A, D] (one candidate set shared by every image, e.g. "a photo of {answer}").
    """
    img = np.asarray(image_emb, dtype=np.float64)  # [B, D]
    txt = np.asarray(text_emb, dtype=np.float64)  # [B, A, D] | [A, D]
    if img.ndim != 2:
        raise ValueError(f"zero_shot: image embeddings must be [B, D], got shape {img.shape}")
    if (
        txt.ndim not in (2, 3)
        or txt.shape[-1] != img.shape[1]
        or (txt.ndim == 3 and txt.shape[0] != img.shape[0])
    ):
        raise ValueError(
            f"zero_shot: text embeddings must be [B, A, D] or [A, D] with B={img.shape[0]}, "
            f"D={img.shape[1]}; "
            f"got shape {txt.shape}"
        )
    if txt.shape[-2] == 0:
        raise ValueError("zero_shot: no candidates")
    if not (np.isfinite(img).all() and np.isfinite(txt).all()):
        raise ValueError("zero_shot: embeddings must be finite")
    if normalize:
        img, txt = _unit(img, "image"), _unit(txt, "text")
    if txt.ndim == 2:
        return img @ txt.T  # [B, A]
    return np.einsum("bd,bad->ba", img, txt)  # [B, A]


def zero_shot_predict(image_emb: np.ndarray, text_emb: np.ndarray, normalize: bool = True) -> np.ndarray:
    """[B] index of the best candidate of each image (ties: the lowest index)."""
    return zero_shot_scores(image_emb, text_emb, normalize).argmax(axis=1)


def zero_shot_answers(
    image_emb: np.ndarray,
    text_emb: np.ndarray,
    candidates: Sequence[str] | Sequence[Sequence[str]],
    normalize: bool = True,
) -> list[str]:
    """The chosen candidate string of each image (answers, for `clipvil.metrics.vqa.vqa_accuracy`).

    candidates: [A] strings shared by every image, or [B][A] per image — aligned with `text_emb`.
    """
    picks = zero_shot_predict(image_emb, text_emb, normalize)  # [B]
    n_cand = np.asarray(text_emb).shape[-2]
    shared = len(candidates) > 0 and isinstance(candidates[0], str)
    rows = [candidates] * len(picks) if shared else list(candidates)
    if len(rows) != len(picks):
        raise ValueError(f"zero_shot: {len(rows)} candidate lists for {len(picks)} images")
    out = []
    for b, (row, pick) in enumerate(zip(rows, picks, strict=True)):
        if len(row) != n_cand:
            raise ValueError(f"zero_shot: image {b} has {len(row)} candidate strings for {n_cand} embeddings")
        out.append(str(row[int(pick)]))
    return out


__all__ = ["zero_shot_answers", "zero_shot_predict", "zero_shot_scores"]
