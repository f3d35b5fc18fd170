"""CLIP itself: contrastive pre-training (`clip`, open_clip's ClipLoss), the ImageNet-style baseline
(`classify`), zero-shot retrieval (`retrieval`) and zero-shot VQA (`zeroshot_vqa`), and WebDataset shards."""

from clipvil.families.clip import classify, retrieval, task, zeroshot_vqa  # noqa: F401  (register the tasks)
