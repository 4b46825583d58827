#!/usr/bin/env bash
# Type-checks the whole workspace with candle's CUDA backend (`--features cuda`) on a machine
# with no GPU: installs NVIDIA's pinned compiler wheels (requirements.txt) into scripts/cuda/.venv,
# puts their nvcc on PATH, and runs `cargo check`, which also runs candle-kernels' build script
# (every CUDA kernel compiled to PTX by nvcc, and its static MoE/GGUF kernels compiled).
# It does not link: that needs libcuda and cuBLAS (see gpu_check.sh for a GPU machine).
#   CUDA_COMPUTE_CAP   target compute capability (default 90: H100/H200)
#   CARGO_TARGET_DIR   default target/cuda-check (kept apart from the CPU build)
set -euo pipefail
cd "$(dirname "$0")"
bash ../pinned_venv.sh .
CUDA_ROOT="$(.venv/bin/python -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))')"
export CUDA_ROOT CUDA_PATH="$CUDA_ROOT" PATH="$CUDA_ROOT/bin:$PATH"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
nvcc --version | tail -2
cd ../..
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/cuda-check}"
cargo check --workspace --all-targets --features align/cuda,align-models/cuda "$@"
echo "cuda check: ok (compute capability $CUDA_COMPUTE_CAP)"
