"""The study's report: cell records (encoder x seed) -> mean and spread per encoder, as study.json, study.md
(a Markdown table: overall, then one column per metric group, e.g. VQA question types) and study.png (the
overall metric by encoder: bars at the mean, the standard deviation over seeds as error bars, each seed a dot,
coloured by tower family)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clipvil.common.atomic import atomic_write, atomic_write_json, atomic_write_text


def summarise(records: Sequence[dict[str, Any]], order: Sequence[str]) -> list[dict[str, Any]]:
    """One row per encoder (in `order`): {encoder, family, seeds, mean: {metric: x}, std: {metric: s},
    values: {metric: [per seed]}}; std is the sample standard deviation (0 for one seed)."""
    rows = []
    for name in order:
        mine = [r for r in records if r["encoder"] == name]
        if not mine:
            continue
        keys = list(mine[0]["metrics"])
        values = {k: [float(r["metrics"].get(k, math.nan)) for r in mine] for k in keys}
        rows.append({"encoder": name, "family": mine[0]["family"], "seeds": [r["seed"] for r in mine],
                     "mean": {k: float(np.mean(v)) for k, v in values.items()},
                     "std": {k: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for k, v in values.items()},
                     "values": values})
    return rows


def markdown_table(rows: Sequence[dict[str, Any]], metric: str = "accuracy") -> str:
    """The rows as a Markdown table: mean ± std over seeds, overall first."""
    keys = list(rows[0]["mean"]) if rows else []
    head = ["encoder", "family", "seeds", *[f"{metric} ({k})" if k == "overall" else k for k in keys]]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * len(keys)) + "|"]
    for row in rows:
        cells = [f"{row['mean'][k]:.2f} ± {row['std'][k]:.2f}" for k in keys]
        lines.append("| " + " | ".join([row["encoder"], row["family"], str(len(row["seeds"])), *cells]) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[dict[str, Any]], path: Path, metric: str = "overall", label: str = "accuracy") -> None:
    """Bars of the mean, error bars of the std over seeds, a dot per seed; colours by family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = sorted({r["family"] for r in rows})
    colours = {f: plt.get_cmap("tab10")(i) for i, f in enumerate(families)}
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(rows) + 1.5), 3.8))
    for i, row in enumerate(rows):
        ax.bar(i, row["mean"][metric], yerr=row["std"][metric], capsize=4, color=colours[row["family"]],
               alpha=0.75, label=row["family"])
        seeds = row["values"][metric]
        ax.scatter([i + (j - (len(seeds) - 1) / 2) * 0.12 for j in range(len(seeds))], seeds, color="black",
                   s=10, zorder=3)
    handles = {h.get_label(): h for h in ax.containers}
    ax.legend([handles[f] for f in families if f in handles], [f for f in families if f in handles], fontsize=8)
    ax.set_xticks(range(len(rows)), [r["encoder"] for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"{label} ({metric})")
    ax.set_title("encoder study: mean ± std over seeds (dots: seeds)", fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def write_report(records: Sequence[dict[str, Any]], out: Path, order: Sequence[str], task: str,
                 metric: str = "metric") -> dict[str, Any]:
    """Writes study.json, study.md and study.png under `out`; returns the JSON data. `metric` names the
    overall metric in the table header and the plot's axis."""
    rows = summarise(records, order)
    data = {"task": task, "rows": rows, "cells": list(records),
            "files": {"json": str(out / "study.json"), "markdown": str(out / "study.md"), "plot": str(out / "study.png")}}
    atomic_write_json(out / "study.json", data, indent=2)
    atomic_write_text(out / "study.md", markdown_table(rows, metric))
    plot(rows, out / "study.png", label=metric)
    return data


__all__ = ["markdown_table", "plot", "summarise", "write_report"]
