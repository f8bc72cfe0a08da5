#!/usr/bin/env bash
# The CUDA checks and the CUDA extraction speed, in one go, on a machine with a GPU.
# Usage (from the repo root, with the project importable):
#   bash benchmarks/gpu_extract.sh [RESULTS_DIR] [extra bench_extract flags]
# First `pytest -m gpu` (the same vectors as the CPU, a fine-tune, images, a predictor on the GPU),
# then bench_extract on cuda. Both run even when the first fails; the exit status is the worse.
# Results: RESULTS_DIR (default benchmarks/results/bench_extract_gpu)/results.{json,md} and
# gpu_tests.log, next to nvidia-smi's description of the card.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/results/bench_extract_gpu}"
shift || true
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'transformers', transformers.__version__)" | tee -a "$out/gpu.txt"
HF_HUB_OFFLINE=1 python -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider 2>&1 | tee "$out/gpu_tests.log"
tests=$?
HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 python benchmarks/bench_extract.py --sst2-rows 20000 --imdb-rows 5000 \
    --repeats 3 --device cuda --out "$out" "$@"
bench=$?
echo "pytest -m gpu: exit $tests; bench_extract: exit $bench; results in $out"
exit $(( tests > bench ? tests : bench ))
