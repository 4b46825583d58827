#!/usr/bin/env bash
# The test command of the README (and of .ci/run): everything the tests need, then the tests.
# No GPU, no network beyond the package registries, no Python (fixtures are committed).
set -euo pipefail
cd "$(dirname "$0")/.."
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-$(nproc)}"
# Dependencies are built with opt-level 3 even in the test profile (Cargo.toml), so the tests
# that train small models run at full speed.
cargo test --workspace --no-fail-fast 2>&1
