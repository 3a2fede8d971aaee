#!/usr/bin/env bash
# Training tokens/s on CPU (issue 4 item 9): gridlock's training step against
# a plain PyTorch loop of the same model, batch and optimizer
# (bench/train_torch.py), run interleaved (ours, torch, ours, torch, ...)
# with the same thread count (2). Each run reports the median and best step
# over STEPS timed steps after 2 warm-up steps; the last line is the ratio
# of the medians of the per-run medians. Usage (repo root):
#   bench/train_bench.sh [PRESET=tiny] [ROUNDS=3] [BUILD_DIR=build] [STEPS]
# PRESET tiny: recipes/tiny.yaml's model, T 256, B 8 (STEPS default 10);
# PRESET pythia-160m: T 256, B 4 (STEPS default 4; slow).
# Each side at its best: PyTorch as bench/torch_peer.sh runs it (settings
# applied to the PyTorch command only); gridlock with
# OMP_WAIT_POLICY=ACTIVE (its many short parallel regions gain ~15% from
# spinning workers on idle cores). When other jobs share the 2 cores,
# spinning loses time slices and gridlock drops 2-4x: run with
# GRIDLOCK_WAIT_POLICY=PASSIVE there (docs/benchmarks.md).
set -euo pipefail
preset="${1:-tiny}"
rounds="${2:-3}"
build="${3:-build}"
case "$preset" in
  tiny) seq=256 batch=8 steps="${4:-10}" ;;
  pythia-160m) seq=256 batch=4 steps="${4:-4}" ;;
  *) echo "train_bench.sh: PRESET must be tiny or pythia-160m, got '$preset'" >&2; exit 2 ;;
esac
source "$(dirname "${BASH_SOURCE[0]}")/torch_peer.sh"
[[ -x "$build/bench/gridlock_bench_train" ]] ||
  { echo "train_bench.sh: $build/bench/gridlock_bench_train not built" >&2; exit 1; }
args=(--preset "$preset" --seq "$seq" --batch "$batch" --steps "$steps" --warmup 2)
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for r in $(seq "$rounds"); do
  OMP_NUM_THREADS=2 OMP_WAIT_POLICY="${GRIDLOCK_WAIT_POLICY:-ACTIVE}" \
    "$build/bench/gridlock_bench_train" "${args[@]}" | tee -a "$log"
  torch_peer bench/train_torch.py "${args[@]}" --threads 2 | tee -a "$log"
done
# Ratio line: median over rounds of each side's median tokens/s.
/usr/bin/python3 - "$log" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ours = [r["tokens_per_s"] for r in rows if r["bench"] == "gridlock_train"]
torch = [r["tokens_per_s"] for r in rows if r["bench"] == "torch_train"]
g, t = statistics.median(ours), statistics.median(torch)
print(json.dumps({"bench": "train_ratio", "preset": rows[0]["preset"], "rounds": len(ours),
                  "gridlock_tokens_per_s": round(g, 1), "torch_tokens_per_s": round(t, 1),
                  "gridlock_over_torch": round(g / t, 3),
                  "gridlock_runs": ours, "torch_runs": torch}))
PY
