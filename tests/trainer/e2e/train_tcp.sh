#!/usr/bin/env bash
# Data parallelism without MPI: ./train on 2 processes started by
# scripts/launch_local.sh (torchrun's variables, dist/tcp.h's "tcp"
# backend) must give the same run as one process with the same global
# batch (grad_accum 2): the same losses at every step and bit-identical
# final weights and optimizer state, for the reason tests/trainer/e2e/
# train_mpi.sh gives. Also with the all-reduce after backward instead of
# overlapped, and with sync-free steps (train.sync_free=true).
#
# DEVICE=cuda runs every process on the GPU (issue 6: "with one GPU, test
# N=2 processes on it"; the two share the GPU, so their gradients go
# through host memory, NCCL refusing two ranks on one device), against one
# process on that GPU.
#
#   train_tcp.sh GRIDLOCK_TRAIN SOURCE_DIR WORK_DIR
set -euo pipefail
train="$1" src="$2" work="$3"
device="${DEVICE:-cpu}"
if [[ "$device" == cuda ]] && ! { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q "^GPU"; }; then
  echo "no GPU visible: skipped"
  exit 77
fi
rm -rf "$work" && mkdir -p "$work" && cd "$work"
recipe="$src/tests/trainer/e2e/small.yaml"
export OMP_NUM_THREADS=1
common=(run.out_dir="$work/runs" data.cache_dir="${GRIDLOCK_CORPUS_CACHE:-$work/cache}" run.device="$device")

run1() {  # NAME ARGS...: one process
  local name="$1"; shift
  "$train" "$recipe" "${common[@]}" run.name="$name" "$@" > "$name.log" 2>&1 ||
    { cat "$name.log"; echo "FAIL: the single-process run $name failed"; exit 1; }
}
run2() {  # NAME ARGS...: 2 processes, tcp backend
  local name="$1"; shift
  bash "$src/scripts/launch_local.sh" 2 "$train" "$recipe" "${common[@]}" run.name="$name" "$@" > "$name.log" 2>&1 ||
    { cat "$name.log"; echo "FAIL: the 2-process run $name failed"; exit 1; }
  grep -q "on 2 processes" "$name.log" || { cat "$name.log"; echo "FAIL: $name did not see 2 ranks"; exit 1; }
}
same_run() {  # A B: the same losses at every step, the same final checkpoint files
  python3 - "$work/runs/$1/metrics.jsonl" "$work/runs/$2/metrics.jsonl" "$1" "$2" <<'PY'
import json, sys
def records(p):
    return [json.loads(l) for l in open(p) if l.strip()]
a, b = records(sys.argv[1]), records(sys.argv[2])
ta = [(r["step"], r["loss"]) for r in a if r["kind"] == "train"]
tb = [(r["step"], r["loss"]) for r in b if r["kind"] == "train"]
va = [(r["step"], r["val_loss"]) for r in a if r["kind"] == "val"]
vb = [(r["step"], r["val_loss"]) for r in b if r["kind"] == "val"]
assert len(ta) == 8 and len(va) == 2, (ta, va)
assert ta == tb, f"train losses differ:\n {sys.argv[3]} {ta}\n {sys.argv[4]} {tb}"
assert va == vb, f"validation losses differ:\n {sys.argv[3]} {va}\n {sys.argv[4]} {vb}"
print(f"{sys.argv[4]} == {sys.argv[3]}: same losses at all {len(ta)} steps: {ta[0][1]} -> {ta[-1][1]}")
PY
  for f in model.safetensors optimizer.safetensors; do
    cmp "runs/$1/checkpoints/step-00000008/$f" "runs/$2/checkpoints/step-00000008/$f" ||
      { echo "FAIL: $f differs between $1 and $2"; exit 1; }
  done
}

run1 single data.grad_accum=2
run2 tcp data.grad_accum=1
grep -q "overlapped with backward" tcp.log || { cat tcp.log; echo "FAIL: tcp did not overlap the all-reduce"; exit 1; }
same_run single tcp
run2 tcp_off data.grad_accum=1 dist.overlap_grad_reduce=false
same_run single tcp_off
run2 tcp_sf data.grad_accum=1 train.sync_free=true
grep -q "step checks on the device" tcp_sf.log || { cat tcp_sf.log; echo "FAIL: tcp_sf was not sync-free"; exit 1; }
same_run single tcp_sf
echo "PASS ($device): 2 processes (tcp backend) == 1 process with the same global batch, overlapped or not, sync-free too"
