#!/usr/bin/env bash
# Makes scripts/serve/.venv with the pinned OpenAI Python client (requirements.txt), for the
# test crates/align-serve/tests/python_client.rs. Idempotent: reinstalls only when the pin
# changes. Tests skip with a clear message when ALIGN_SKIP_PYTHON=1.
set -euo pipefail
cd "$(dirname "$0")"
bash ../pinned_venv.sh .
.venv/bin/python -c "import openai; print('openai', openai.__version__)"
