"""Captioning: a Transformer over CLIP grids, cross-entropy then SCST (CIDEr-D reward); the `caption` task, its
data, reward and predictor."""

from clipvil.families.caption import model, task  # noqa: F401  (register the task and the captioner)
