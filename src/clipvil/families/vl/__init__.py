"""CLIP-ViL_p: V&L pre-training with an unfrozen CLIP (`vl_pretrain`: MLM + ITM + QA) and its fine-tuning on VQA,
GQA, SNLI-VE and NLVR2 (`vl_finetune`). Builds on the clip family (its model and data)."""

from clipvil.families.vl import finetune, pretrain, transformer  # noqa: F401  (register the tasks and the model)
