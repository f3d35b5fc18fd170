#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment in .venv when it is missing or when
# pyproject.toml / requirements/constraints.txt changed since it was made. Source it or run it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
py="${PYTHON:-python3}"
# Debian's Chromium for the browser test of `clipvil serve` (Playwright drives it; it cannot download its own)
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
  echo "[clipvil] installing Debian's chromium (browser tests)" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >&2 \
    || echo "[clipvil] could not install chromium: the browser test will fail" >&2
fi
stamp_now="$(cat "$root/pyproject.toml" "$root/requirements/constraints.txt" | sha256sum | cut -c1-16)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.clipvil-stamp" 2>/dev/null)" != "$stamp_now" ]; then
  echo "[clipvil] creating the environment in $venv (first run only, ~1-2 minutes)" >&2
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" >&2 || true
  PIP_CONSTRAINT="$root/requirements/constraints.txt" \
    "$venv/bin/python" -m pip install -q -e "$root[dev]" 2>&1 | grep -v "^WARNING: Location" >&2 || true
  "$venv/bin/python" -c "import clipvil, torch, open_clip" \
    || { echo "[clipvil] environment install failed" >&2; exit 1; }
  echo "$stamp_now" > "$venv/.clipvil-stamp"
fi
