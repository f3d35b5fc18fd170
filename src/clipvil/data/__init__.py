"""clipvil.data: readers of the official V&L data formats, answer vocabularies, tokenizers, result writers.

Each reader validates as it reads: malformed input raises `DataFormatError` (a ValueError) naming the file and
the entry; oddities the real data contains are kept, counted (``.warnings`` of the result) and logged on the
``clipvil.data`` logger. See docs/data.md.
"""

from clipvil.data.answers import (
    VQA_MIN_COUNT,
    AnswerVocab,
    SoftTarget,
    TargetStats,
    build_answer_vocab,
    build_vqa_answer_vocab,
    dense_targets,
    hard_target,
    load_answer_vocab,
    vqa_soft_target,
    vqa_soft_targets,
)
from clipvil.data.captions import (
    KARPATHY_SPLITS,
    Caption,
    CocoCaptions,
    KarpathyImage,
    KarpathySplit,
    read_coco_captions,
    read_image_list,
    read_karpathy,
)
from clipvil.data.gqa import GqaQuestion, GqaSplit, gqa_question_files, read_gqa
from clipvil.data.lxmert import (
    LxmertAnswerTable,
    LxmertData,
    LxmertSentence,
    convert_lxmert_answer,
    load_lxmert_answer_table,
    read_lxmert,
)
from clipvil.data.snli_ve import (
    SNLI_VE_LABELS,
    SnliVePair,
    SnliVeSplit,
    flickr30k_image_filename,
    read_snli_ve,
)
from clipvil.data.submission import write_gqa_submission, write_vqa_submission
from clipvil.data.tokenizers import (
    BertTextTokenizer,
    CaptionVocab,
    ClipBpeTokenizer,
    TokenBatch,
    default_bert_dir,
    tokenize_caption,
)
from clipvil.data.validate import DataFormatError, WarningCounter
from clipvil.data.vqa import VqaExample, VqaSplit, coco_image_filename, coco_image_id, read_vqa

__all__ = [
    "KARPATHY_SPLITS",
    "SNLI_VE_LABELS",
    "VQA_MIN_COUNT",
    "AnswerVocab",
    "BertTextTokenizer",
    "Caption",
    "CaptionVocab",
    "ClipBpeTokenizer",
    "CocoCaptions",
    "DataFormatError",
    "GqaQuestion",
    "GqaSplit",
    "KarpathyImage",
    "KarpathySplit",
    "LxmertAnswerTable",
    "LxmertData",
    "LxmertSentence",
    "SnliVePair",
    "SnliVeSplit",
    "SoftTarget",
    "TargetStats",
    "TokenBatch",
    "VqaExample",
    "VqaSplit",
    "WarningCounter",
    "build_answer_vocab",
    "build_vqa_answer_vocab",
    "coco_image_filename",
    "coco_image_id",
    "convert_lxmert_answer",
    "default_bert_dir",
    "dense_targets",
    "flickr30k_image_filename",
    "gqa_question_files",
    "hard_target",
    "load_answer_vocab",
    "load_lxmert_answer_table",
    "read_coco_captions",
    "read_gqa",
    "read_image_list",
    "read_karpathy",
    "read_lxmert",
    "read_snli_ve",
    "read_vqa",
    "tokenize_caption",
    "vqa_soft_target",
    "vqa_soft_targets",
    "write_gqa_submission",
    "write_vqa_submission",
]
