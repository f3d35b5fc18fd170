"""clipvil.metrics: the official evaluation metrics as pure functions over plain Python / numpy inputs.

- vqa: VQA v2 accuracy exactly as the official evaluation, fast (`vqa_accuracy`).
- accuracy: GQA and SNLI-VE exact-match accuracies.
- caption: COCO caption metrics through pycocoevalcap (BLEU, METEOR, ROUGE-L, CIDEr, SPICE when present).
- cider: fast CIDEr-D equal to pycocoevalcap's, with a cached document frequency for SCST rewards.
- nav: R2R / RxR navigation metrics (TL, NE, SR, OSR, SPL, nDTW, sDTW) over a distance lookup.
"""

from clipvil.metrics.accuracy import (
    SNLI_VE_LABELS,
    gqa_accuracy,
    gqa_answers_from_questions,
    snli_ve_accuracy,
    snli_ve_gold_labels,
)
from clipvil.metrics.caption import caption_scores, ptb_tokenize, spice_unavailable_reason
from clipvil.metrics.cider import CiderD, cider_d
from clipvil.metrics.nav import EpisodeScores, NavScores, navigation_scores, score_episode
from clipvil.metrics.vqa import (
    VqaReference,
    VqaScores,
    official_round,
    predictions_from_results,
    references_from_annotations,
    vqa_accuracy,
)

__all__ = [
    "SNLI_VE_LABELS",
    "CiderD",
    "EpisodeScores",
    "NavScores",
    "VqaReference",
    "VqaScores",
    "caption_scores",
    "cider_d",
    "gqa_accuracy",
    "gqa_answers_from_questions",
    "navigation_scores",
    "official_round",
    "predictions_from_results",
    "ptb_tokenize",
    "references_from_annotations",
    "score_episode",
    "snli_ve_accuracy",
    "snli_ve_gold_labels",
    "spice_unavailable_reason",
    "vqa_accuracy",
]
