#!/usr/bin/env bash
# SIGTERM / SIGINT sent to a running ./train (issue 8 item 3): the step in
# progress finishes, a checkpoint of it is saved, the process exits 75
# (EX_TEMPFAIL, apps/train.cpp) saying how to resume, and --resume continues
# bit-identically to an uninterrupted run of the same length (CPU, one
# thread, constant learning rate so the run's length does not change it).
#
# No timing assumption: the run is 100000 steps long, the signal is sent
# only after its first progress line appeared, and the run's own message
# says at which step it stopped; the comparison run is then made that long.
# Each signal appends a JSON line to RESULTS_DIR/fault_signal.jsonl for
# docs/reliability.md.
#
#   fault_signal.sh GRIDLOCK_TRAIN SOURCE_DIR WORK_DIR RESULTS_DIR
set -uo pipefail
train="$1" src="$2" work="$3" results="$4"
rm -rf "$work" && mkdir -p "$work" "$results" && cd "$work" || exit 1
rm -f "$results/fault_signal.jsonl"
rows="$work/rows.jsonl"  # moved into RESULTS_DIR only when every check passed
fail() { echo "FAIL: $*"; exit 1; }
check="$src/tests/trainer/e2e/check_checkpoints.py"
python3 "$src/tests/trainer/e2e/make_fault_data.py" "$work" 100000 constant || fail "writing the token shards"
recipe="$work/recipe.yaml"

for sig in TERM INT; do
  name="sig$sig"
  "$train" "$recipe" run.name="$name" > "$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 1200); do  # up to 120 s for the first step on a loaded machine
    grep -qE "^step +[0-9]+/" "$name.log" && break
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.1
  done
  grep -qE "^step +[0-9]+/" "$name.log" || { kill -9 "$pid"; cat "$name.log"; fail "$name: no progress line"; }
  kill -"$sig" "$pid"
  wait "$pid"; rc=$?
  [[ $rc -eq 75 ]] || { tail -5 "$name.log"; fail "$name: exit $rc after SIG$sig, expected 75"; }
  line=$(grep "SIG$sig received: stopped after step" "$name.log") || { tail -5 "$name.log"; fail "$name: no stop message"; }
  grep -q -- "--resume" <<< "$line" || fail "$name: the message does not say how to resume: $line"
  n=$(sed -E 's/.*stopped after step ([0-9]+),.*/\1/' <<< "$line")
  ck="runs/$name/checkpoints/step-$(printf %08d "$n")"
  [[ -s "$ck/model.safetensors" ]] || fail "$name: no checkpoint of step $n ($line)"
  python3 "$check" "runs/$name" || fail "$name: a checkpoint is corrupt"
  total=$((n + 3))
  "$train" "$recipe" run.name="$name" --resume train.steps=$total > "$name.resume.log" 2>&1 ||
    { cat "$name.resume.log"; fail "$name: --resume failed"; }
  grep -q "resuming .*step-$(printf %08d "$n") at step $n" "$name.resume.log" || fail "$name: did not resume at step $n"
  "$train" "$recipe" run.name="straight$sig" train.steps=$total > "straight$sig.log" 2>&1 || fail "straight run"
  a="runs/straight$sig/checkpoints/step-$(printf %08d $total)" b="runs/$name/checkpoints/step-$(printf %08d $total)"
  cmp -s "$a/model.safetensors" "$b/model.safetensors" || fail "$name: weights differ from the uninterrupted run"
  cmp -s "$a/optimizer.safetensors" "$b/optimizer.safetensors" || fail "$name: optimizer state differs"
  python3 - "$rows" "$sig" "$n" <<'PY'
import json, sys
path, sig, n = sys.argv[1:4]
with open(path, "a") as f:
    f.write(json.dumps({"fault": f"SIG{sig} sent to ./train", "where": "after the first progress line (it stopped "
                        f"after step {n})", "trials": 1, "ok": True,
                        "outcome": "checkpoint of the step saved, exit 75 with a --resume hint; --resume bit-identical",
                        "test": "fault_signal (tests/trainer/e2e/fault_signal.sh)"}) + "\n")
PY
done
mv "$rows" "$results/fault_signal.jsonl" || fail "cannot write $results"
echo "PASS"
