#!/usr/bin/env bash
# Sharded extraction on one node with torchrun: N processes, one shard each (each on its own
# GPU when there are GPUs, else on the CPU), then rank 0 merges the shards into one store.
# Usage: bash examples/distributed_extract.sh INPUT OUTPUT.h5 [N] [extra featx extract options]
set -euo pipefail
input=${1:?input file}; output=${2:?output store}; procs=${3:-2}; shift $(( $# < 3 ? $# : 3 ))
# On a CPU-only node, give each process its share of the cores.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( $(nproc) / procs > 0 ? $(nproc) / procs : 1 ))}
torchrun --standalone --nproc_per_node "$procs" -m featx extract "$input" -o "$output" --merge "$@"
featx info "$output"
