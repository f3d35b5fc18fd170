"""The task families, one package each: `clipvil.families.<name>` holds the family's tasks, models, family-only
data, predictor and the rest, and registers its tasks and models when imported.

Nothing lists the families: the engine imports every package of this folder on its first lookup of a task or
model name (`clipvil.engine.registry.load_families`), so a new family is one new folder plus its recipes.
Families do not import each other, with one stated exception: vl (CLIP-ViL_p) builds on clip.
"""
