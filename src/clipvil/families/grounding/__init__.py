"""Grounding: a box head over CLIP grids for referring expressions (RefCOCO-style) and GQA-style questions; the
`grounding` task, its grid frame, loss and predictor."""

from clipvil.families.grounding import model, task  # noqa: F401  (register the task and the model)
