#!/usr/bin/env bash
# Pythia-160m forward tokens/s on CPU: gridlock against tuned PyTorch, runs
# interleaved (ours, torch, ours, torch, ...), same thread count (2), and
# the Eigen SGEMM ceiling from the gridlock process. Usage (repo root):
#   bench/pythia_forward.sh [ROUNDS=3] [BUILD_DIR=build]
# PyTorch at its best here: Debian's python3-torch under /usr/bin/python3,
# OPENBLAS_CORETYPE=SkylakeX, OMP_WAIT_POLICY=PASSIVE, tcmalloc preloaded.
# These settings apply to the PyTorch command only.
set -euo pipefail
rounds="${1:-3}"
build="${2:-build}"
tcmalloc=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
# Without OpenBLAS, Debian's torch falls back to the reference BLAS (about
# 30x slower): the peer would not be at its best.
for pkg in libtcmalloc-minimal4 libopenblas0-pthread python3-torch; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
    { echo "pythia_forward.sh: apt-get install -y $pkg" >&2; exit 1; }
done
for r in $(seq "$rounds"); do
  OMP_NUM_THREADS=2 "$build/bench/gridlock_bench_pythia_forward" --seq 512 --reps 5
  OPENBLAS_CORETYPE=SkylakeX OMP_WAIT_POLICY=PASSIVE LD_PRELOAD="$tcmalloc" \
    /usr/bin/python3 bench/pythia_forward_torch.py --seq 512 --reps 5 --threads 2
done
