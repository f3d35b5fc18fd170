"""The study's report: cell records (encoder x seed) -> mean and spread per encoder, as study.json, study.md
(a Markdown table: overall, then one column per metric group, e.g. VQA question types) and study.png (the
overall metric by encoder: bars at the mean, the standard deviation over seeds as error bars, each seed a dot,
coloured by tower family).

A data-efficiency study (records with a "size") gets one row per (encoder, size): study.md opens with the
curves as a table (encoder x size, overall) and then the full table of each size, and study.png draws the
curves (metric against the number of training items, log scale; a line per encoder, ± std as error bars, each
seed a dot; one panel per tower family)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clipvil.common.atomic import atomic_write, atomic_write_json, atomic_write_text


def sizes_of(records: Sequence[dict[str, Any]]) -> list[int | None]:
    """The data sizes of the records, ascending ([None]: a study without sizes)."""
    sizes = sorted({r["size"] for r in records if r.get("size") is not None})
    return list(sizes) or [None]


def summarise(records: Sequence[dict[str, Any]], order: Sequence[str]) -> list[dict[str, Any]]:
    """One row per encoder (in `order`) and data size (ascending; rows of a study with sizes carry "size"):
    {encoder, family, seeds, mean: {metric: x}, std: {metric: s}, values: {metric: [per seed]}}; std is the
    sample standard deviation (0 for one seed)."""
    rows = []
    for size in sizes_of(records):
        for name in order:
            mine = [r for r in records if r["encoder"] == name and r.get("size") == size]
            if not mine:
                continue
            keys = list(mine[0]["metrics"])
            values = {k: [float(r["metrics"].get(k, math.nan)) for r in mine] for k in keys}
            rows.append({"encoder": name, **({} if size is None else {"size": size}), "family": mine[0]["family"],
                         "seeds": [r["seed"] for r in mine],
                         "mean": {k: float(np.mean(v)) for k, v in values.items()},
                         "std": {k: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for k, v in values.items()},
                         "values": values})
    return rows


def curve_table(rows: Sequence[dict[str, Any]], metric: str = "accuracy", unit: str = "items") -> str:
    """A data-efficiency study's curves as a Markdown table: one line per encoder, the overall metric
    (mean ± std over seeds) at each size."""
    sizes = sorted({r["size"] for r in rows})
    names = list(dict.fromkeys(r["encoder"] for r in rows))
    cell = {(r["encoder"], r["size"]): r for r in rows}
    lines = ["| encoder | family | " + " | ".join(f"{metric} @ {n} {unit}" for n in sizes) + " |",
             "|---|---|" + "---:|" * len(sizes)]
    for name in names:
        family = next(r["family"] for r in rows if r["encoder"] == name)
        values = [f"{cell[name, n]['mean']['overall']:.2f} ± {cell[name, n]['std']['overall']:.2f}"
                  if (name, n) in cell else "—" for n in sizes]
        lines.append(f"| {name} | {family} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


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


def plot_curves(rows: Sequence[dict[str, Any]], path: Path, metric: str = "overall", label: str = "accuracy",
                unit: str = "items") -> None:
    """The data-efficiency curves: one panel per tower family, a line per encoder (mean over seeds, ± std as error
    bars, each seed a dot), the number of training items on a log axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(dict.fromkeys(r["family"] for r in rows))
    names = list(dict.fromkeys(r["encoder"] for r in rows))
    colours = {n: plt.get_cmap("tab10")(i % 10) for i, n in enumerate(names)}
    fig, axes = plt.subplots(1, len(families), figsize=(4.6 * len(families), 3.8), squeeze=False, sharey=True)
    for ax, family in zip(axes[0], families, strict=True):
        here = [n for n in names if any(r["encoder"] == n and r["family"] == family for r in rows)]
        for k, name in enumerate(here):
            mine = sorted((r for r in rows if r["encoder"] == name), key=lambda r: r["size"])
            shift = math.exp((k - (len(here) - 1) / 2) * 0.035)  # encoders side by side on the log axis
            xs = np.array([r["size"] for r in mine], dtype=float) * shift
            mean = np.array([r["mean"][metric] for r in mine])
            std = np.array([r["std"][metric] for r in mine])
            ax.errorbar(xs, mean, yerr=std, marker="o", ms=4, capsize=3, color=colours[name], label=name)
            for r in mine:
                ax.scatter([r["size"] * shift] * len(r["values"][metric]), r["values"][metric], color=colours[name],
                           s=6, alpha=0.6, zorder=3)
        ax.set_xscale("log")
        sizes = sorted({r["size"] for r in rows if r["family"] == family})
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()
        ax.set_xlabel(f"training {unit}")
        ax.set_title(family, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel(f"{label} ({metric})")
    fig.suptitle("data efficiency: mean ± std over seeds (dots: seeds)", fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def write_report(records: Sequence[dict[str, Any]], out: Path, order: Sequence[str], task: str,
                 metric: str = "metric", unit: str = "items") -> dict[str, Any]:
    """Writes study.json, study.md and study.png under `out`; returns the JSON data. `metric` names the
    overall metric in the table header and the plot's axis; `unit` what a data size counts."""
    rows = summarise(records, order)
    data = {"task": task, "rows": rows, "cells": list(records),
            "files": {"json": str(out / "study.json"), "markdown": str(out / "study.md"),
                      "plot": str(out / "study.png")}}
    curves = sizes_of(records) != [None]
    if curves:
        data["unit"] = unit
    atomic_write_json(out / "study.json", data, indent=2)
    if curves:
        parts = [f"## Data efficiency ({metric} against training {unit})\n\n" + curve_table(rows, metric, unit)]
        for size in sizes_of(records):
            parts.append(f"## {size} training {unit}\n\n"
                         + markdown_table([r for r in rows if r["size"] == size], metric))
        atomic_write_text(out / "study.md", "\n".join(parts))
        plot_curves(rows, out / "study.png", label=metric, unit=unit)
    else:
        atomic_write_text(out / "study.md", markdown_table(rows, metric))
        plot(rows, out / "study.png", label=metric)
    return data


__all__ = ["curve_table", "markdown_table", "plot", "plot_curves", "sizes_of", "summarise", "write_report"]
