"""Synthetic-world generation speed: wall time of `make_data` for N images (goal: 5000 images < 60 s here).

    .venv/bin/python benchmarks/synthetic.py --images 5000 --out benchmarks/results/synthetic.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import write_json
from clipvil.data.synthetic import make_data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--out", default="benchmarks/results/synthetic.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start, cpu = time.perf_counter(), time.process_time()
        make_data(Path(tmp) / "w", args.images, seed=0, workers=args.workers, progress=False)
        wall = time.perf_counter() - start
    write_json(args.out, {"benchmark": "synthetic", "images": args.images, "wall_seconds": round(wall, 1),
                          "images_per_s": round(args.images / wall, 1), "goal_seconds_for_5000": 60,
                          "main_process_cpu_seconds": round(time.process_time() - cpu, 1)})


if __name__ == "__main__":
    main()
