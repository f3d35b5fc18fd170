"""Vision-and-language navigation: R2R and RxR with EnvDrop's follower and speaker over CLIP view features, on
the connectivity graphs (no simulator); the `vln` task, its data, rollout, evaluation and view features."""

from clipvil.families.vln import envdrop, task  # noqa: F401  (register the task and the models)
