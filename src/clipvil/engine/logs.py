"""Run logs: JSONL records, TensorBoard scalars and a tqdm progress bar (rank 0 only).

Files under `<out_dir>/logs/`:
    train.jsonl  one record per log step: step, epoch, loss, lr, samples_per_sec, [grad_norm],
                 [lr/<extra optimizer>], and the task's extra scalars (means over the log window)
    eval.jsonl   one record per evaluation: step, epoch, split, and the task's metrics
    tb/          TensorBoard event files (train/<key>, eval/<key>)

On resume both JSONL files are cut back to the checkpoint's step (and TensorBoard purges later steps),
so a resumed run's logs read as if it had never stopped. A run that ends between two log steps writes
its open window as a record with `"partial": true`; continuing that run replaces it.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Self

from tqdm import tqdm


def truncate_jsonl(path: Path, max_step: int) -> None:
    """Keeps the records with step <= max_step, minus `partial` ones (the window of a run that ended
    mid-window, which the continued run logs in full) and a torn last line left by a kill."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # only the last line can be torn: the writer flushes whole lines
        if int(record.get("step", 0)) <= max_step and not record.get("partial", False):
            kept.append(line)
    path.write_text("".join(line + "\n" for line in kept))


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All records of a JSONL log."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy and torch scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"log value {value!r} of type {type(value).__name__} is not JSON-serialisable")


def _scalar(value: Any) -> float | None:
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()  # numpy / torch 0-d scalars
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


class RunLogger:
    """Writes a run's logs; every method is a no-op on ranks other than 0."""

    def __init__(
        self,
        out_dir: str | Path,
        enabled: bool,
        start_step: int,
        total_steps: int,
        tensorboard: bool = True,
        progress: bool = True,
    ) -> None:
        self.enabled = enabled
        self.log_dir = Path(out_dir) / "logs"
        self.tb: Any = None
        self.bar: tqdm | None = None
        if not enabled:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in ("train.jsonl", "eval.jsonl"):
            truncate_jsonl(self.log_dir / name, start_step)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imported lazily: tensorboard is heavy

            self.tb = SummaryWriter(
                str(self.log_dir / "tb"), purge_step=start_step + 1 if start_step else None
            )
        if progress:
            self.bar = tqdm(
                total=total_steps,
                initial=start_step,
                desc="train",
                unit="step",
                dynamic_ncols=True,
                file=sys.stderr,
            )

    def _write(self, name: str, record: dict[str, Any], prefix: str) -> None:
        with open(
            self.log_dir / name, "a"
        ) as handle:  # whole lines, closed at once: a kill tears at most one
            handle.write(json.dumps(record, default=_json_default) + "\n")
        if self.tb is not None and not record.get("partial", False):  # a continued run re-logs that step
            for key, value in record.items():
                number = _scalar(value)
                if number is not None and key != "step":
                    self.tb.add_scalar(f"{prefix}/{key}", number, record["step"])

    def log_train(self, record: dict[str, Any]) -> None:
        """Appends a training record (must hold `step`); shows loss and throughput on the bar."""
        if not self.enabled:
            return
        self._write("train.jsonl", record, "train")
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{record['loss']:.4g}", sps=f"{record.get('samples_per_sec', 0):.1f}")

    def log_eval(self, record: dict[str, Any]) -> None:
        """Appends an evaluation record (must hold `step`)."""
        if not self.enabled:
            return
        self._write("eval.jsonl", record, f"eval/{record['split']}" if record.get("split") else "eval")
        if self.bar is not None:
            self.bar.write(f"eval @ step {record['step']}: " + json.dumps(record, default=_json_default))

    def advance(self, steps: int = 1) -> None:
        """Moves the progress bar."""
        if self.bar is not None:
            self.bar.update(steps)

    def close(self) -> None:
        """Flushes TensorBoard and closes the progress bar (safe to call twice)."""
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
