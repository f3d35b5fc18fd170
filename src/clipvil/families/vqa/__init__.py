"""VQA (and GQA, SNLI-VE through the same heads): MCAN, MoVie+MCAN and Pythia over frozen CLIP grids, trained with
BCE over soft answer scores; the `vqa` task, its data, losses and predictor."""

from clipvil.families.vqa import movie_mcan, task  # noqa: F401  (register the task and MoVie+MCAN)
from clipvil.families.vqa.mcan import MCAN, MCAN_PRESETS, MCANConfig
from clipvil.families.vqa.pythia import PYTHIA_PRESETS, Pythia, PythiaConfig

__all__ = ["MCAN", "MCAN_PRESETS", "PYTHIA_PRESETS", "MCANConfig", "Pythia", "PythiaConfig"]
