#!/usr/bin/env bash
# Run bench_extract on a CUDA machine in one go and keep the results beside the CPU ones.
# Usage (from the repo root, with the project installed): bash benchmarks/gpu_extract.sh [extra bench_extract flags]
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# First the same vectors as the CPU (fp32 and bf16), then the speed.
HF_HUB_OFFLINE=1 python -m pytest -q -m gpu tests/test_gpu.py
out="benchmarks/results/bench_extract_gpu"
python benchmarks/bench_extract.py --sst2-rows 20000 --imdb-rows 5000 --repeats 3 \
    --device cuda --out "$out" "$@"
echo "results in $out"
