#!/usr/bin/env bash
# Makes DIR/.venv with the pinned packages of DIR/requirements.txt (PYTHON picks the
# interpreter, default python3). Idempotent: reinstalls only when the pins change.
#   bash scripts/pinned_venv.sh scripts/serve
set -euo pipefail
cd "$1"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! cmp -s requirements.txt .venv/.installed 2>/dev/null; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
  cp requirements.txt .venv/.installed
fi
