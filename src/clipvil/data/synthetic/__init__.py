"""The embedded synthetic world: coloured shapes on varied backgrounds, with VQA v2, GQA, SNLI-VE,
COCO / Karpathy caption and LXMERT pre-training files in their official formats (docs/synthetic.md).

    from clipvil.data.synthetic import make_data
    manifest = make_data("data/synthetic", n_images=5000, seed=0)
    manifest.path("vqa_questions", "train")   # .../vqa/v2_OpenEnded_mscoco_train2014_questions.json
"""

from clipvil.data.synthetic.generate import make_data
from clipvil.data.synthetic.manifest import Manifest
from clipvil.data.synthetic.spec import WorldSpec

__all__ = ["Manifest", "WorldSpec", "make_data"]
