"""Dataset sizes the cards print, each with its source (never guessed: a size not known here is None).

- COCO Karpathy split (Karpathy & Fei-Fei, CVPR 2015): 113,287 train images (train 82,783 + restval 30,504),
  5,000 val, 5,000 test; val and test hold 25,010 captions each (counted in ../shared/data, SOURCES.md).
  Training captions of train + restval: 566,747 = COCO 2014's 616,767 captions (414,113 in
  captions_train2014.json + 202,654 in captions_val2014.json; Chen et al. 2015) minus the 2 x 25,010 of val and
  test — derived, as Karpathy's dataset_coco.json keeps every COCO 2014 caption.
- COCO test2014 (the caption server's split): 40,775 images (image_info_test2014.json; cocodataset.org).
- Flickr30k Karpathy test: 1,000 images, 5 captions each (Karpathy & Fei-Fei 2015).
- RefCOCO (unc; Yu et al. 2016): expressions train 120,624 / val 10,834 / testA 5,657 / testB 5,095 (checked
  against FlagEval's RefCOCO page and TFDS ref_coco); RefCOCO+ (unc): 120,191 / 10,758 / 5,726 / 4,889;
  RefCOCOg (umd; Mao et al. 2016, Nagaraja et al. 2016): 80,512 / 4,896 / 9,602 — the RefCOCO+ / RefCOCOg
  counts as tabulated by TransVG (Deng et al., ICCV 2021, section 4.1), not checked against a stored source.
- ImageNet-1k (ILSVRC-2012; Russakovsky et al. 2015): 1,281,167 train images, 50,000 val, 1,000 classes.
"""

from __future__ import annotations

from typing import Any

KARPATHY_SOURCE = ("COCO Karpathy split (Karpathy & Fei-Fei, CVPR 2015); val/test caption counts from "
                   "../shared/data/SOURCES.md; train captions derived from COCO 2014's 616,767 (Chen et al. 2015)")
KARPATHY_IMAGES = {"train": 82_783, "restval": 30_504, "val": 5_000, "test": 5_000}  # Karpathy's own split names
KARPATHY_TRAIN_RESTVAL = 113_287  # train + restval: what captioning trains on
KARPATHY_CAPTIONS = {"train+restval": 566_747, "val": 25_010, "test": 25_010}
COCO_TEST2014_IMAGES = 40_775
FLICKR_SOURCE = "Flickr30k (Young et al. 2014), Karpathy split (Karpathy & Fei-Fei, CVPR 2015)"
FLICKR_TEST_IMAGES = 1_000

REFER_SOURCE = ("RefCOCO/RefCOCO+ (Yu et al., ECCV 2016; unc splits), RefCOCOg (Mao et al., CVPR 2016; umd splits "
                "of Nagaraja et al. 2016): expressions per split as tabulated by TransVG (Deng et al., ICCV 2021); "
                "RefCOCO's also on FlagEval's and TFDS's RefCOCO pages")
REFER_EXPRESSIONS: dict[str, dict[str, int]] = {
    "refcoco": {"train": 120_624, "val": 10_834, "testA": 5_657, "testB": 5_095},
    "refcoco+": {"train": 120_191, "val": 10_758, "testA": 5_726, "testB": 4_889},
    "refcocog": {"train": 80_512, "val": 4_896, "test": 9_602},
}

IMAGENET_SOURCE = "ImageNet-1k, ILSVRC-2012 (Russakovsky et al., IJCV 2015)"
IMAGENET = {"train": 1_281_167, "val": 50_000, "classes": 1_000}


def unknown(note: str = "size not known to the card") -> dict[str, Any]:
    return {"note": note}


__all__ = ["COCO_TEST2014_IMAGES", "FLICKR_SOURCE", "FLICKR_TEST_IMAGES", "IMAGENET", "IMAGENET_SOURCE",
           "KARPATHY_CAPTIONS", "KARPATHY_IMAGES", "KARPATHY_SOURCE", "KARPATHY_TRAIN_RESTVAL", "REFER_EXPRESSIONS",
           "REFER_SOURCE", "unknown"]
