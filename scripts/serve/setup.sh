#!/usr/bin/env bash
# Makes scripts/serve/.venv with the pinned OpenAI Python client (requirements.txt), for the
# test crates/align-serve/tests/python_client.rs. Idempotent: reinstalls only when the pin
# changes. Tests skip with a clear message when ALIGN_SKIP_PYTHON=1.
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! cmp -s requirements.txt .venv/.installed 2>/dev/null; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
  cp requirements.txt .venv/.installed
fi
.venv/bin/python -c "import openai; print('openai', openai.__version__)"
