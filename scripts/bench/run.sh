#!/usr/bin/env bash
# Runs `align bench` and scripts/bench/torch_bench.py one after the other with the same thread
# count, then prints align/PyTorch ratios. Results: target/bench/{align,torch}.json.
#
#   scripts/bench/run.sh                      # all sizes, threads = cores
#   THREADS=2 scripts/bench/run.sh --size tiny --steps 5
#   PROFILE=1 scripts/bench/run.sh            # + perf profile of align (tiny), torch.profiler tables
#
# Extra arguments go to both benchmarks (they share flag names). ALIGN_BENCH overrides the align
# command (default: target/release/align bench); PY the Python (default: the fixtures venv).
set -euo pipefail
cd "$(dirname "$0")/../.."

THREADS=${THREADS:-$(nproc)}
OUT=${OUT:-target/bench}
PY=${PY:-scripts/fixtures/.venv/bin/python}
ALIGN_BENCH=${ALIGN_BENCH:-target/release/align bench}
mkdir -p "$OUT"

if [[ -z "${NO_BUILD:-}" ]]; then
  cargo build --release -p align
fi

# Speed levers of shared/CANDLE.md; mimalloc reads its options at start, so they go in the env.
export MIMALLOC_PURGE_DELAY=-1 CANDLE_BARRIER_POOL_SPIN_LIMIT=0
export RAYON_NUM_THREADS=$THREADS CANDLE_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS

echo "load before: $(uptime)" | tee "$OUT/load.txt"
# shellcheck disable=SC2086
$ALIGN_BENCH --threads "$THREADS" --json "$OUT/align.json" "$@"
echo "load between: $(uptime)" | tee -a "$OUT/load.txt"
PROF_ARGS=()
[[ -n "${PROFILE:-}" ]] && PROF_ARGS=(--profile)
"$PY" scripts/bench/torch_bench.py --threads "$THREADS" --json "$OUT/torch.json" "${PROF_ARGS[@]}" "$@"
echo "load after: $(uptime)" | tee -a "$OUT/load.txt"

if [[ -n "${PROFILE:-}" ]] && command -v perf >/dev/null; then
  # Where align's time goes, by function, over 3 training steps of the tiny model.
  # shellcheck disable=SC2086
  perf record -F 499 -g -o "$OUT/perf.data" $ALIGN_BENCH --threads "$THREADS" --size tiny --steps 3 \
    --skip-generation --skip-matmul >/dev/null 2>&1
  perf report -i "$OUT/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null \
    | grep "%" | head -25 > "$OUT/perf_tiny.txt" || true
  cat "$OUT/perf_tiny.txt"
fi

"$PY" scripts/bench/compare.py "$OUT/align.json" "$OUT/torch.json" | tee "$OUT/ratios.md"
