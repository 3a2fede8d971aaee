#!/usr/bin/env bash
# GPU benchmark in one call (issue "CUDA performance", item 5): check, then
# time Pythia-160m training on one GPU against the PyTorch peers measured in
# the same run, interleaved (gridlock bf16, torch hf, torch compiled,
# gridlock tf32, gridlock bf16 with QAT, then gridlock bf16 again so drift
# shows, then bf16 on the WMMA attention kernels). gridlock's bf16 is run.precision=bf16: bf16 operands and f32
# accumulation in the products (cuBLASLt), everything else f32; the peers
# run bf16 autocast, the same split.
#
#   bench/gpu/run.sh [BUILD_DIR]      (default build-gpu)
#
# BUILD_DIR must hold tests/test_cuda and bench/gridlock_bench_train. If it
# does not, the script configures and builds it (needs the packages of
# scripts/setup.sh; a lent GPU machine has no package mirror, so there the
# binaries are built beforehand on a CPU machine with
# -DGRIDLOCK_NATIVE=OFF -DGRIDLOCK_MPI=OFF and carried, with
# libyaml-cpp.so.0.7 in a folder named by GRIDLOCK_LIB_DIR).
#
# Environment: SKIP_PARITY (0), SEQ (2048), BATCHES ("16,12,8,4,2,1": the first that fits is
# timed, so the largest micro-batch that fits), STEPS (10), PEAK_TFLOPS
# (989: H100 SXM dense bf16), OUT_DIR (where JSON lines and logs go;
# default $OUT or bench/gpu/out).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root" || exit 1
build="${1:-build-gpu}"
seq_len="${SEQ:-2048}"
batches="${BATCHES:-16,12,8,4,2,1}"
steps="${STEPS:-10}"
peak="${PEAK_TFLOPS:-989}"
out="${OUT_DIR:-${OUT:-bench/gpu/out}}"
mkdir -p "$out"
[[ -n "${GRIDLOCK_LIB_DIR:-}" ]] && export LD_LIBRARY_PATH="$GRIDLOCK_LIB_DIR:${LD_LIBRARY_PATH:-}"
py="${PYTHON:-python3}"

if [[ ! -x "$build/bench/gridlock_bench_train" || ! -x "$build/tests/test_cuda" ]]; then
  echo "== building $build/"
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >"$out/configure.log" 2>&1 &&
    cmake --build "$build" --target test_cuda gridlock_bench_train >"$out/build.log" 2>&1 ||
    { echo "bench/gpu: build failed (see $out/build.log)" >&2; exit 1; }
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader |
  tee "$out/device.txt"

# The parity tests must pass before any number means something. They read
# fixtures through the source path compiled in; give them this checkout.
# (SKIP_PARITY=1: the caller has just run them, as bench/gpu/session.sh does.)
if [[ "${SKIP_PARITY:-0}" != 1 ]]; then
  echo "== checking: $build/tests/test_cuda"
  if ! "$build/tests/test_cuda" >"$out/test_cuda.log" 2>&1; then
    tail -30 "$out/test_cuda.log"
    echo "bench/gpu: CUDA parity tests fail; no timings taken" >&2
    exit 1
  fi
  tail -3 "$out/test_cuda.log"
fi

results="$out/results.jsonl"
: >"$results"
# ours [--qat]: the first batch size of $batches that fits.
ours() {
  local b
  for b in ${batches//,/ }; do
    if "$build/bench/gridlock_bench_train" --device cuda --preset pythia-160m --seq "$seq_len" \
        --batch "$b" --steps "$steps" --warmup 2 "$@" >>"$results" 2>>"$out/ours.log"; then
      return 0
    fi
    echo "gridlock: batch $b failed ($(tail -1 "$out/ours.log")), trying the next" >&2
  done
  return 1
}
peer() {
  "$py" bench/gpu/torch_peer.py --peer "$1" --seq "$seq_len" --batch "$batches" \
    --steps "$((steps * 2))" --peak-tflops "$peak" >>"$results" 2>>"$out/torch_$1.log" ||
    echo "torch $1 failed: $(tail -1 "$out/torch_$1.log")" >&2
}
echo "== timing (seq $seq_len, batches tried $batches)"
ours --precision bf16
peer hf
peer compiled
ours --tf32
ours --precision bf16 --qat
ours --precision bf16
# The WMMA attention kernels instead of the mma.sync ones: what the latter gain.
[[ "${GRIDLOCK_ATTENTION_MMA:-1}" != 0 ]] && GRIDLOCK_ATTENTION_MMA=0 ours --precision bf16 --tag attention-wmma

"$py" - "$results" "$seq_len" "$peak" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
T, peak = int(sys.argv[2]), float(sys.argv[3])
C, L, FF, V = 768, 12, 3072, 50304
fpt = 6 * (L * (4 * C * C + 2 * C * FF) + C * V) + 12 * L * T * C
best_peer = max((r["tokens_per_s"] for r in rows if r["bench"].startswith("torch")), default=0)
ours = [r for r in rows if r["bench"] == "gridlock_train"]
main = "bf16" if any(r["dtype"] == "bf16" for r in ours) else "tf32"
fp = [r["tokens_per_s"] for r in ours if not r["qat"] and r["dtype"] == main and not r.get("tag")]
print(f"\n| run | dtype | batch | tokens/s | MFU | vs best peer | reserved GiB | cudaMalloc in timed steps |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for r in rows:
    name = r["bench"] + (" +qat" if r.get("qat") else "") + (f" [{r['tag']}]" if r.get("tag") else "")
    dt = r.get("dtype", "f32")
    tps = r["tokens_per_s"]
    ratio = f"{tps / best_peer:.3f}x" if best_peer else "-"
    print(f"| {name} | {dt} | {r['batch']} | {tps:,.0f} | {tps * fpt / (peak * 1e12):.1%} | {ratio} "
          f"| {r.get('reserved_gib', 0):.1f} | {r.get('mallocs_timed', '-')} |")
q = [r["tokens_per_s"] for r in ours if r["qat"] and r["dtype"] == main]
if fp and q:
    print(f"\nQAT overhead: {(max(fp) / q[0] - 1):.1%} ({main} step time: the faster run without QAT vs the QAT run)")
print(f"FLOPs per token {fpt:,} (seq {T}); MFU against {peak} TFLOP/s")
EOF
