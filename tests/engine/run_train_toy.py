"""Runs the toy task through `clipvil.engine.train` (for torchrun and kill -9 tests).

Usage: python run_train_toy.py CONFIG.yaml [key.sub=value ...]
"""

from __future__ import annotations

import sys

import seam_toy  # noqa: F401  (registers the seam toy task)
import train_toy  # noqa: F401  (registers the toy task)

from clipvil.engine import load_config, train

if __name__ == "__main__":
    train(load_config(sys.argv[1], sys.argv[2:]))
