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


CURVE_MARKER = re.compile(r"<!-- curve-table: (\S+) (\w+) -->")


def curve_rows(recorded: dict) -> dict[str, list[str]]:
    """The README rows of a data-efficiency task: per encoder, its family and the metric (mean ± std over the
    seeds) at each size, ascending."""
    sizes = sorted({r["size"] for r in recorded["rows"]})
    cell = {(r["encoder"], r["size"]): r for r in recorded["rows"]}
    rows = {}
    for r in recorded["rows"]:
        rows[r["encoder"]] = [r["family"]] + [
            f"{cell[r['encoder'], n]['mean']['overall']:.2f} ± {cell[r['encoder'], n]['std']['overall']:.2f}"
            if (r["encoder"], n) in cell else "—" for n in sizes]
    return rows


def test_the_data_efficiency_tables_are_the_recorded_curves() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    marked = [(i, CURVE_MARKER.match(line)) for i, line in enumerate(lines) if CURVE_MARKER.match(line)]
    assert marked, "README.md has no data-efficiency table marker"
    for index, match in marked:
        recorded = json.loads((REPO / match.group(1)).read_text())[match.group(2)]
        expected = curve_rows(recorded)
        table = _table_after(lines, index)
        assert table == expected, f"the README's {match.group(2)} curves are not {match.group(1)}"
        header = lines[index + 1]
        assert all(f"{n} {recorded['unit']}" in header for n in sorted({r["size"] for r in recorded["rows"]}))


ZERO_SHOT_MARKER = re.compile(r"<!-- zero-shot-table: (\S+) -->")


def zero_shot_rows(recorded: dict) -> dict[str, list[str]]:
    """The README rows of the zero-shot benchmark: per tower, retrieval R@1 both ways and rsum, then zero-shot VQA
    accuracy with each template (plain / qa / photo) and its "other" answers (plain)."""
    rows = {}
    for r in recorded["rows"]:
        ret, vqa = r["retrieval"], r["zeroshot_vqa"]
        rows[f"`{r['encoder']}` {r['tower']}"] = [
            f"{ret['i2t_R@1']:.1f}", f"{ret['t2i_R@1']:.1f}", f"{ret['rsum']:.1f}",
            *(f"{vqa[f'{t}/accuracy']:.2f}" for t in ("plain", "qa", "photo")), f"{vqa['plain/type/other']:.2f}"]
    return rows


def test_the_zero_shot_table_is_the_recorded_benchmark() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    marked = [(i, ZERO_SHOT_MARKER.match(line)) for i, line in enumerate(lines) if ZERO_SHOT_MARKER.match(line)]
    assert marked, "README.md has no zero-shot table marker"
    for index, match in marked:
        recorded = json.loads((REPO / match.group(1)).read_text())
        assert _table_after(lines, index) == zero_shot_rows(recorded)
        assert f"majority answer: {recorded['majority_vqa_accuracy']:.2f}" in "\n".join(lines)
