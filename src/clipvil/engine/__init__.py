"""clipvil.engine: the training engine shared by every task (config, loop, checkpoints, logs, DDP).

cfg = load_config("configs/vqa/mcan_rn50.yaml", ["train.batch_size=32", "optim.lr=5e-5"])
result = train(cfg)                                   # resumes from <out_dir>/checkpoints/last.pt
metrics = evaluate(cfg, result.best_checkpoint, "val")

The public building blocks a recipe with its own loop composes: clipvil.engine.loop (setup_run, next_update,
update, after_update, evaluate_splits, save_state), clipvil.engine.builders, clipvil.engine.checkpoint.
"""

from clipvil.engine.checkpoint import CheckpointMismatchError
from clipvil.engine.config import (
    ExtraOptimizerConfig,
    OptimConfig,
    PhaseConfig,
    RunConfig,
    ScheduleConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)
from clipvil.engine.config_io import ConfigError
from clipvil.engine.evaluate import evaluate
from clipvil.engine.loop import NonFiniteLossError, RunResult, train

__all__ = [
    "CheckpointMismatchError",
    "ConfigError",
    "ExtraOptimizerConfig",
    "NonFiniteLossError",
    "OptimConfig",
    "PhaseConfig",
    "RunConfig",
    "RunResult",
    "ScheduleConfig",
    "TrainConfig",
    "config_from_dict",
    "config_to_dict",
    "evaluate",
    "load_config",
    "save_config",
    "train",
]
