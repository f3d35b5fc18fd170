"""The README's measured tables are the recorded result files, number for number.

A table in README.md is tied to a result file by a marker line `<!-- demo-table: PATH -->` right above it. A
rerun of `bash scripts/demo.sh` writes runs/demo/demo_result.json; copying it to benchmarks/results/demo.json
without updating the README (or the other way round) fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!-- demo-table: (\S+) -->")


def _table_after(lines: list[str], start: int) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for line in lines[start + 3:]:  # marker, header, separator
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def demo_rows(recorded: dict) -> dict[str, list[str]]:
    """The README rows of a demo result: overall mean ± std per tower, then per-question-type means, each
    followed by the majority answer's score."""
    towers = recorded["towers"]
    majority = recorded["majority_per_question_type"]
    rows = {"overall": [f"{t['mean']:.2f} ± {t['std']:.2f}" for t in towers.values()]
            + [f"{recorded['majority_baseline']:.2f}"]}
    for q in next(iter(towers.values()))["per_question_type"]:
        rows[q] = [f"{t['per_question_type'][q]:.2f}" for t in towers.values()] + [f"{majority.get(q, 0.0):.2f}"]
    return rows


def test_the_demo_table_is_the_recorded_demo_result() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    marked = [(i, MARKER.match(line)) for i, line in enumerate(lines) if MARKER.match(line)]
    assert marked, "README.md has no demo table marker"
    for index, match in marked:
        recorded = json.loads((REPO / match.group(1)).read_text())
        expected = demo_rows(recorded)
        table = _table_after(lines, index)
        assert set(table) == set(expected), f"{match.group(1)}: the README table's rows differ"
        for name, values in expected.items():
            assert table[name] == values, f"README row {name!r} is not {match.group(1)}"
        text = "\n".join(lines)
        assert f"({recorded['minutes']} min wall" in text  # the stated wall time is the recorded one


PROBE_MARKER = re.compile(r"<!-- probe-table: (\S+) -->")


def test_the_probe_table_is_the_recorded_demo_result() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    marked = [(i, PROBE_MARKER.match(line)) for i, line in enumerate(lines) if PROBE_MARKER.match(line)]
    assert marked, "README.md has no probe table marker"
    for index, match in marked:
        probes = json.loads((REPO / match.group(1)).read_text())["probes"]
        table = _table_after(lines, index)
        assert len(table) == len(probes)
        for (cell, values), scores in zip(table.items(), probes.values()):
            assert values == [f"{scores[a]:.2f}" for a in ("shape", "colour", "count", "position")], cell


CARDS_MARKER = re.compile(r"<!-- cards-table: (\S+) -->")


def _hours(hours: float | None) -> str:
    if hours is None:
        return "?"
    return "< 0.001" if hours < 0.001 else f"{hours:.2g}" if hours < 10 else f"{hours:,.0f}"


def card_row(card: dict) -> list[str]:
    """A README row of a recipe card (after the recipe cell): trainable params, GFLOP per sample, updates,
    GPU-hours, hours measured here, the paper's number."""
    return [f"{card['trainable_params'] / 1e6:.1f} M", f"{card['flops_per_sample'] / 1e9:,.1f}",
            "evaluation only" if card["evaluation_only"] else f"{card['updates']:,}", _hours(card["gpu_hours"]),
            _hours(card["hours_here"]), "—" if card["paper"] is None else f"{card['paper']}"]


def test_the_cards_table_is_the_recorded_cards_result() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    marked = [(i, CARDS_MARKER.match(line)) for i, line in enumerate(lines) if CARDS_MARKER.match(line)]
    assert marked, "README.md has no cards table marker"
    for index, match in marked:
        recorded = json.loads((REPO / match.group(1)).read_text())["cards"]
        table = _table_after(lines, index)
        assert table, "the cards table is empty"
        for cell, values in table.items():
            name = cell.strip("`")
            assert name in recorded, f"README card row {name!r} is not in {match.group(1)}"
            assert values == card_row(recorded[name]), f"README card row {name!r} is not {match.group(1)}"
