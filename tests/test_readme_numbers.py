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


def test_the_demo_table_is_the_recorded_demo_result() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    marked = [(i, MARKER.match(line)) for i, line in enumerate(lines) if MARKER.match(line)]
    assert marked, "README.md has no demo table marker"
    for index, match in marked:
        recorded = json.loads((REPO / match.group(1)).read_text())
        expected = {"overall": [recorded["accuracy"], recorded["random_tower_accuracy"], recorded["majority_baseline"]],
                    **recorded["per_question_type"]}
        table = _table_after(lines, index)
        assert set(table) == set(expected), f"{match.group(1)}: the README table's rows differ"
        for name, values in expected.items():
            assert table[name] == [f"{v:.2f}" for v in values], f"README row {name!r} is not {match.group(1)}"
        text = "\n".join(lines)
        assert f"({recorded['minutes']} min wall" in text  # the stated wall time is the recorded one
