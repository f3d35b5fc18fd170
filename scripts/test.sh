#!/usr/bin/env bash
# The test command: creates .venv when missing, checks the import layers and the lint (ruff), runs pytest.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -m slow`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/env.sh"
cd "$root"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
.venv/bin/lint-imports pyproject.toml
.venv/bin/ruff check --quiet src tests benchmarks
exec .venv/bin/python -m pytest "$@"
