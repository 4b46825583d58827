#!/usr/bin/env bash
# The GPU checks of docs/cuda.md, for a machine with an NVIDIA GPU and a CUDA toolkit (nvcc on
# PATH, or CUDA_ROOT set): builds align with `--features cuda`, runs the transformers parity tests
# on the GPU (ALIGN_TEST_DEVICE=cuda), trains and samples through the binary on the GPU, and
# benchmarks align against PyTorch there (same models, same steps; PY must have torch with CUDA).
# Results: $OUT (default target/gpu-check): parity.log, bench-align.json, bench-torch.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-target/gpu-check}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,compute_cap,memory.total --format=csv | tee "$OUT/gpu.txt"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)}"

cargo build --release -p align --features cuda
# transformers parity (logits, loss, every gradient, padded batch, KV-cache decode, save/load) on cuda.
ALIGN_TEST_DEVICE=cuda cargo test --release -p align-models --features cuda --test parity 2>&1 | tee "$OUT/parity.log"
# A training step (forward, backward, clipping, AdamW) and batched generation on the GPU, through the binary.
./target/release/align bench --device cuda --size all --skip-matmul --json "$OUT/bench-align.json"
if [[ -n "${PY:-}" ]]; then
  "$PY" scripts/bench/torch_bench.py --device cuda --size all --skip-matmul --json "$OUT/bench-torch.json"
fi
echo "gpu check: done ($OUT)"
