"""clipvil.models: pure nn.Modules mapping (GridFeatures, question token ids) to answer logits.

No loss, no I/O, no encoder import: the task layer builds these from a config and owns the loss.
"""

from clipvil.models.mcan import MCAN, MCAN_PRESETS, MCANConfig
from clipvil.models.pythia import PYTHIA_PRESETS, Pythia, PythiaConfig
from clipvil.models.text import QuestionEncoder, question_mask

__all__ = [
    "MCAN",
    "MCAN_PRESETS",
    "PYTHIA_PRESETS",
    "MCANConfig",
    "Pythia",
    "PythiaConfig",
    "QuestionEncoder",
    "question_mask",
]
