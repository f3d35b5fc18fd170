"""Where each file of a synthetic world lives (relative to its root), mirroring each dataset's own layout.

manifest.json                                  what was generated, with these paths
coco/{train2014,val2014,test2015}/COCO_<split>_<id:012d>.jpg      the images
scenes/scenes_<coco split>.json                ground truth: every object of every image
vqa/v2_OpenEnded_mscoco_<coco split>_questions.json, vqa/v2_mscoco_<coco split>_annotations.json
gqa/{train,val,testdev}_balanced_questions.json, gqa/images/<id>.jpg      (hard links)
snli_ve/snli_ve_{train,dev,test}.jsonl, snli_ve/flickr30k_images/<id>.jpg  (hard links)
captions/captions_<coco split>.json, captions/dataset_coco.json (Karpathy)
lxmert/mscoco_train.json, lxmert/mscoco_minival.json, lxmert/all_ans.json
"""

from __future__ import annotations

from clipvil.data.synthetic.spec import COCO_SPLIT, GQA_SPLIT, LXMERT_SPLIT, SNLI_VE_SPLIT

MANIFEST = "manifest.json"
TOP_LEVEL: tuple[str, ...] = (
    "coco",
    "scenes",
    "vqa",
    "gqa",
    "snli_ve",
    "captions",
    "lxmert",
    MANIFEST,
    MANIFEST + ".tmp",
)


def coco_name(split: str, image_id: int) -> str:
    """'COCO_train2014_000000000042' (the file stem, also LXMERT's img_id)."""
    return f"COCO_{COCO_SPLIT[split]}_{image_id:012d}"


def coco_image(split: str, image_id: int) -> str:
    return f"coco/{COCO_SPLIT[split]}/{coco_name(split, image_id)}.jpg"


def gqa_image(image_id: int) -> str:
    return f"gqa/images/{image_id}.jpg"


def flickr_image(image_id: int) -> str:
    return f"snli_ve/flickr30k_images/{image_id}.jpg"


def scenes_file(split: str) -> str:
    return f"scenes/scenes_{COCO_SPLIT[split]}.json"


def vqa_questions(split: str) -> str:
    return f"vqa/v2_OpenEnded_mscoco_{COCO_SPLIT[split]}_questions.json"


def vqa_annotations(split: str) -> str:
    return f"vqa/v2_mscoco_{COCO_SPLIT[split]}_annotations.json"


def gqa_questions(split: str) -> str:
    return f"gqa/{GQA_SPLIT[split]}_balanced_questions.json"


def snli_ve(split: str) -> str:
    return f"snli_ve/snli_ve_{SNLI_VE_SPLIT[split]}.jsonl"


def coco_captions(split: str) -> str:
    return f"captions/captions_{COCO_SPLIT[split]}.json"


KARPATHY = "captions/dataset_coco.json"
LXMERT_ANSWERS = "lxmert/all_ans.json"


def lxmert(split: str) -> str:
    return f"lxmert/{LXMERT_SPLIT[split]}.json"
