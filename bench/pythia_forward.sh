#!/usr/bin/env bash
# Pythia-160m forward tokens/s on CPU: gridlock against tuned PyTorch, runs
# interleaved (ours, torch, ours, torch, ...), same thread count (2), and
# the SGEMM ceilings (Eigen and ours from the gridlock process, OpenBLAS
# from the PyTorch one). Usage (repo root):
#   bench/pythia_forward.sh [ROUNDS=3] [BUILD_DIR=build]
# PyTorch at its best here: bench/torch_peer.sh says how (settings applied
# to the PyTorch command only).
set -euo pipefail
rounds="${1:-3}"
build="${2:-build}"
source "$(dirname "${BASH_SOURCE[0]}")/torch_peer.sh"
for r in $(seq "$rounds"); do
  OMP_NUM_THREADS=2 "$build/bench/gridlock_bench_pythia_forward" --seq 512 --reps 5
  torch_peer bench/pythia_forward_torch.py --seq 512 --reps 5 --threads 2
done
