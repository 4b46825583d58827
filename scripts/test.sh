#!/usr/bin/env bash
# The test command of the README (and of .ci/run): everything the tests need, then the tests.
# No GPU, no network beyond the package registries. Parity fixtures are committed (no Python for
# them); the server tests use a pinned openai client venv and Debian chromium + playwright-core,
# installed here (ALIGN_SKIP_PYTHON=1 / ALIGN_SKIP_BROWSER=1 skip those tests).
set -euo pipefail
cd "$(dirname "$0")/.."
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-$(nproc)}"
# A clean checkout gains nothing from incremental-compilation data (GBs on disk); set it to 1 to keep it.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# The OpenAI Python client for crates/align-serve/tests/python_client.rs (pinned, in a venv).
if [ "${ALIGN_SKIP_PYTHON:-0}" != "1" ]; then bash scripts/serve/setup.sh; fi
# Headless Chromium + playwright-core for the browser tests; ALIGN_SKIP_BROWSER=1 skips both.
if [ "${ALIGN_SKIP_BROWSER:-0}" != "1" ]; then bash scripts/browser/setup.sh; fi
# Dependencies are built with opt-level 3 even in the test profile (Cargo.toml), so the tests
# that train small models run at full speed.
cargo test --workspace --no-fail-fast 2>&1
