"""Collects the data-efficiency studies (configs/study/data_efficiency_*.yaml, run first with `clipvil study`)
into one result file and one plot per task: the metric against the number of training items, per encoder and
tower family, mean ± std over seeds. The README's curve tables are this file (tests/test_readme_numbers.py).

    .venv/bin/python benchmarks/data_efficiency.py --out benchmarks/results/data_efficiency.json \\
        --images docs/images
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import write_json
from clipvil.apps.study import load_study
from clipvil.apps.study_report import plot_curves, summarise
from clipvil.apps.study_tasks import ADAPTERS

TASKS = {  # task -> its studies (one per tower family where the families were run apart)
    "vqa": ["data_efficiency_vit", "data_efficiency_rn"],
    "caption": ["data_efficiency_caption"],
    "vln": ["data_efficiency_vln"],
}


def collect(configs: Path, studies: list[str]) -> tuple[list[dict[str, Any]], list[str], str, str]:
    """The finished cells of the studies, the encoders in config order, the adapter's metric and unit."""
    records, order, adapter = [], [], ""
    for study in studies:
        cfg, _ = load_study(configs / f"{study}.yaml")
        adapter = cfg.adapter
        order += [e.name for e in cfg.encoders]
        records += [json.loads(f.read_text()) for f in sorted(Path(cfg.out).glob("cells/*/n*/seed*.json"))]
    return records, order, ADAPTERS[adapter].metric, ADAPTERS[adapter].unit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="configs/study")
    ap.add_argument("--out", default="benchmarks/results/data_efficiency.json")
    ap.add_argument("--images", default="docs/images")
    args = ap.parse_args()
    result: dict[str, Any] = {"benchmark": "data_efficiency"}
    for task, studies in TASKS.items():
        records, order, metric, unit = collect(Path(args.configs), studies)
        if not records:
            continue
        rows = summarise(records, order)
        image = Path(args.images) / f"data_efficiency_{task}.png"
        plot_curves(rows, image, label=metric, unit=unit)
        result[task] = {"studies": studies, "metric": metric, "unit": unit, "image": str(image),
                        "train_seconds": round(sum(r["train_seconds"] for r in records), 1),
                        "rows": [{k: r[k] for k in ("encoder", "family", "size", "seeds", "mean", "std", "values")}
                                 for r in rows]}
    write_json(args.out, result)


if __name__ == "__main__":
    main()
