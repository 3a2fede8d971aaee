#!/usr/bin/env bash
# Everything a lent GPU session has to check and measure, as named steps run
# in order on the GPU machine from the folder bench/gpu/prepare.sh made.
# Each step has its own time limit and its log; a failed step does not stop
# the ones after it unless they need it (no timing without passing parity).
#
#   bench/gpu/session.sh CARRY_DIR [STEP ...]
#
# Steps (default: all, in this order; about 12 minutes on an H100, so a
# 15-minute device budget wants two calls, e.g. "parity sanitize e2e" then
# "bench repro"):
#   parity    test_cuda: every CUDA kernel against the CPU (label gpu)
#   sanitize  compute-sanitizer memcheck on the parity cases of the newest
#             CUDA code (products, attention, the fused ops, multi-tensor
#             AdamW, fake_quantize's bf16/f16 shadow, the sync-free step's
#             gate and gated updates), racecheck on the
#             attention ones
#   e2e       tests/trainer/e2e/train_cuda.sh: ./train on cuda vs cpu, f32 and bf16;
#             tests/trainer/e2e/train_tcp.sh: 2 processes on the GPU == 1
#   bench     bench/gpu/run.sh: Pythia-160m training vs the PyTorch peers
#   repro     bench/gpu/repro_times.sh: the reproduction's run times
# What comes back in $OUT (the device tool returns at most 8 files):
# summary.txt (one line per step: name, status, seconds), results.jsonl and
# repro_times.json when those ran, and logs.tgz with every log.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
carry="$(cd "${1:?usage: session.sh CARRY_DIR [STEP ...]}" && pwd)"
shift
steps=("$@")
[[ ${#steps[@]} -eq 0 ]] && steps=(parity sanitize e2e bench repro)
out="${OUT:-$root/bench/gpu/out}"
work=/tmp/gl_gpu_session
mkdir -p "$out" "$work"
export GRIDLOCK_LIB_DIR="$carry/lib" LD_LIBRARY_PATH="$carry/lib:${LD_LIBRARY_PATH:-}"
# test_cuda reads its fixtures through the source path it was compiled with.
src_compiled=/work/main
[[ -e "$src_compiled" ]] || { mkdir -p "$(dirname "$src_compiled")" && ln -sfn "$root" "$src_compiled"; }
cat "$carry/BUILT_FROM" 2>/dev/null | sed 's/^/built from /' | tee -a "$work/summary.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$work/summary.txt"

parity_ok=unknown
run_step() {  # NAME LIMIT_S CMD...
  local name="$1" limit="$2" t0 rc
  shift 2
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >"$work/$name.log" 2>&1
  rc=$?
  local status=passed
  [[ $rc -eq 124 || $rc -eq 137 ]] && status="timed out (${limit} s)"
  [[ $rc -ne 0 && $status == passed ]] && status="failed (exit $rc)"
  echo "$name: $status, $(( $(date +%s) - t0 )) s" | tee -a "$work/summary.txt"
  tail -4 "$work/$name.log"
  return $rc
}
tc="$carry/tests/test_cuda"
for s in "${steps[@]}"; do
  case "$s" in
    parity)
      if run_step parity 300 "$tc"; then
        parity_ok=yes
      else
        parity_ok=no
        # The newest kernels each have a switch back to older, tested ones:
        # when every failure is theirs, the steps after run with those
        # switches (GRIDLOCK_ATTENTION_MMA=0: the WMMA attention kernels;
        # GRIDLOCK_FUSED_OPS=0: the models' composed bias+GELU and
        # residual+norm, and fake_quantize without its bf16/f16 shadow;
        # GRIDLOCK_SYNC_FREE=0: ./train's host-synchronised steps),
        # so a bad kernel does not cost the session its timings. The
        # summary says which.
        failed=$(grep -h "^TEST CASE:" "$work/parity.log" | sort -u)
        echo "$failed" | sed 's/^/  failed /' | tee -a "$work/summary.txt"
        fallback=()
        echo "$failed" | grep -q "attention with bf16 and f16 operands" && fallback+=(GRIDLOCK_ATTENTION_MMA=0)
        echo "$failed" | grep -qE "bias_gelu|add_layer_norm|low-precision shadow" && fallback+=(GRIDLOCK_FUSED_OPS=0)
        echo "$failed" | grep -qE "check_step|gated|sync-free" && fallback+=(GRIDLOCK_SYNC_FREE=0)
        others=$(echo "$failed" |
          grep -vE "attention with bf16 and f16 operands|bias_gelu|add_layer_norm|low-precision shadow|check_step|gated|sync-free" |
          grep -c .)
        if [[ $others -eq 0 && ${#fallback[@]} -gt 0 ]] &&
           { ! echo "$failed" | grep -q "attention with bf16 and f16 operands" ||
             GRIDLOCK_ATTENTION_MMA=0 "$tc" -tc="*attention with bf16 and f16*" >"$work/parity_wmma.log" 2>&1; }; then
          export "${fallback[@]}"
          parity_ok=yes
          echo "parity: only the newest kernels failed; ${fallback[*]} from here on" | tee -a "$work/summary.txt"
        fi
      fi ;;
    sanitize)
      run_step memcheck 240 compute-sanitizer --tool memcheck --error-exitcode 1 "$tc" \
        -tc="*matmul*,*cuBLASLt*,*attention*,*bias_gelu*,*add_layer_norm*,*multi-tensor*,*linear_cross_entropy*,*low-precision shadow*,*check_step*,*gated*"
      run_step racecheck 240 compute-sanitizer --tool racecheck --error-exitcode 1 "$tc" \
        -tc="*attention*" ;;
    e2e)
      run_step e2e 300 env GRIDLOCK_CORPUS_CACHE="$carry/cache" \
        tests/trainer/e2e/train_cuda.sh "$carry/apps/gridlock_train" "$root" "$work/e2e"
      # 2 processes on the one GPU (tcp backend, no MPI here) == 1 process.
      run_step e2e_tcp 240 env GRIDLOCK_CORPUS_CACHE="$carry/cache" DEVICE=cuda \
        tests/trainer/e2e/train_tcp.sh "$carry/apps/gridlock_train" "$root" "$work/e2e_tcp" ;;
    bench)
      if [[ $parity_ok == no ]]; then echo "bench: skipped (parity failed)" | tee -a "$work/summary.txt"; continue; fi
      run_step bench 420 env OUT_DIR="$work/bench" SKIP_PARITY=$([[ $parity_ok == yes ]] && echo 1 || echo 0) \
        bench/gpu/run.sh "$carry"
      cp "$work/bench/results.jsonl" "$out/" 2>/dev/null ;;
    repro)
      run_step repro 360 env OUT_DIR="$work/repro" bench/gpu/repro_times.sh "$carry"
      cp "$work/repro/repro_times.json" "$out/" 2>/dev/null ;;
    *) echo "unknown step '$s' (parity, sanitize, e2e, bench, repro)" | tee -a "$work/summary.txt" ;;
  esac
done
cp "$work/summary.txt" "$out/"
tar czf "$out/logs.tgz" -C "$work" --exclude='*.safetensors' --exclude='*.bin' --exclude='*.gltok' \
  --exclude='*.u16' --exclude='*.idx' . 2>/dev/null
