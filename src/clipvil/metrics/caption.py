"""COCO caption metrics through pycocoevalcap: PTB tokenisation, then BLEU-1..4, METEOR, ROUGE-L, CIDEr(-D), SPICE.

This is the official COCO caption evaluation (tylin/coco-caption, packaged as pycocoevalcap) called on plain
dicts. It needs Java (`java` on PATH) for the tokenizer and METEOR. SPICE also needs the Stanford CoreNLP
3.6.0 jars in pycocoevalcap/spice/lib, which pycocoevalcap would download on first use; we never download:
when they are absent, SPICE is left out of the result and a warning says why (`spice_unavailable_reason`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.spice import get_stanford_models as _spice_models
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from clipvil.metrics._checks import check_ids, check_text

logger = logging.getLogger(__name__)

_METRIC = "caption_scores"
BLEU_KEYS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4")


def spice_unavailable_reason() -> str | None:
    """None when SPICE can run offline, else why not (the CoreNLP jars pycocoevalcap would download)."""
    lib = Path(_spice_models.SPICEDIR) / _spice_models.SPICELIB
    missing = [name for name in (f"{_spice_models.JAR}.jar", f"{_spice_models.JAR}-models.jar")
               if not (lib / name).is_file()]
    if missing:
        return f"SPICE skipped: {', '.join(missing)} not in {lib} (pycocoevalcap downloads them; we never do)"
    return None


def ptb_tokenize(captions: Mapping[Hashable, Sequence[str]]) -> dict[Hashable, list[str]]:
    """pycocoevalcap's PTB tokenizer: lower-cased, punctuation removed, tokens joined by single spaces."""
    _require_java()
    as_dicts = {key: [{"caption": c} for c in caps] for key, caps in captions.items()}
    return PTBTokenizer().tokenize(as_dicts)


def _require_java() -> None:
    if shutil.which("java") is None:
        raise RuntimeError("caption metrics need Java (`java` on PATH) for the PTB tokenizer and METEOR")


def _check_inputs(predictions: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]]) -> None:
    check_ids(_METRIC, predictions, references, allow_extra=False, item="image")
    if not references:
        raise ValueError(f"{_METRIC}: no images to score")
    for key, refs in references.items():
        check_text(_METRIC, "prediction for image", key, predictions[key])
        if isinstance(refs, str) or not refs:
            raise ValueError(f"{_METRIC}: image {key!r}: references must be a non-empty list of strings")
        for ref in refs:
            check_text(_METRIC, "reference of image", key, ref)


def caption_scores(
    predictions: Mapping[Hashable, str],
    references: Mapping[Hashable, Sequence[str]],
    meteor: bool = True,
    spice: bool = True,
) -> dict[str, float]:
    """Corpus scores {Bleu_1..4, METEOR, ROUGE_L, CIDEr[, SPICE]} of one caption per image vs its references.

    Scores are fractions as pycocoevalcap returns them (CIDEr is not x100: 1.1 means 110 in papers). Raw
    captions go in; both sides are PTB-tokenised here. `meteor=False` skips METEOR (its Java start-up takes
    10-30 s); SPICE is added when `spice` and its CoreNLP jars are present.
    """
    _check_inputs(predictions, references)
    _require_java()
    gts = ptb_tokenize(references)
    res = ptb_tokenize({key: [predictions[key]] for key in references})
    scores: dict[str, float] = {}
    with contextlib.redirect_stdout(io.StringIO()):  # BLEU prints its internal counts
        bleu, _ = Bleu(4).compute_score(gts, res)
    scores.update(zip(BLEU_KEYS, (float(b) for b in bleu)))
    if meteor:
        scorer = Meteor()
        try:
            scores["METEOR"] = float(scorer.compute_score(gts, res)[0])
        finally:
            del scorer  # its __del__ stops the Java process
    scores["ROUGE_L"] = float(Rouge().compute_score(gts, res)[0])
    scores["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    if spice:
        reason = spice_unavailable_reason()
        if reason is None:
            scores["SPICE"] = float(_run_spice(gts, res))
        else:
            logger.warning(reason)
    return scores


def _run_spice(gts: dict[Any, list[str]], res: dict[Any, list[str]]) -> float:
    from pycocoevalcap.spice.spice import Spice  # only constructed when its jars are present (no download)

    return Spice().compute_score(gts, res)[0]
