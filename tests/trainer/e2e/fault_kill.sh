#!/usr/bin/env bash
# SIGKILL during training and during checkpoint writing, then resume
# (issue 8 item 3): no checkpoint is ever corrupt, the run continues from the
# last complete one, and the final weights and optimizer state equal an
# uninterrupted run's bit for bit (CPU, one thread).
#
#   1. GRIDLOCK_FAULT=kill_during_save:N (N = 1..3): the process SIGKILLs
#      itself midway through writing its Nth checkpoint (model files written,
#      optimizer state not), deterministically.
#   2. GRIDLOCK_FAULT=kill_at_step:S for steps S drawn from a seeded RNG.
#   3. kill -9 from outside after seeded random delays, 3 kills per
#      trial, then resume to the end. When the kill lands does not matter to
#      the assertions (before the first checkpoint: the run is restarted;
#      after the end: nothing to resume), so a loaded machine cannot make
#      the test fail, only change which points get hit.
# After every kill every step-* checkpoint is validated (tests/trainer/e2e/
# check_checkpoints.py); at the end, metrics.jsonl holds each step once.
# Each scenario appends a JSON line to RESULTS_DIR/fault_kill.jsonl for
# docs/reliability.md (render_reliability.py).
#
#   fault_kill.sh GRIDLOCK_TRAIN SOURCE_DIR WORK_DIR RESULTS_DIR
set -uo pipefail
train="$1" src="$2" work="$3" results="$4"
rm -rf "$work" && mkdir -p "$work" "$results" && cd "$work" || exit 1
rm -f "$results/fault_kill.jsonl"
rows="$work/rows.jsonl"  # moved into RESULTS_DIR only when every check passed
fail() { echo "FAIL: $*"; exit 1; }
check="$src/tests/trainer/e2e/check_checkpoints.py"
python3 "$src/tests/trainer/e2e/make_fault_data.py" "$work" || fail "writing the token shards"
recipe="$work/recipe.yaml"
steps=12

result() {  # fault where trials outcome
  python3 - "$rows" "$@" <<'PY'
import json, sys
path, fault, where, trials, outcome = sys.argv[1:6]
with open(path, "a") as f:
    f.write(json.dumps({"fault": fault, "where": where, "trials": int(trials), "outcome": outcome,
                        "ok": True, "test": "fault_kill (tests/trainer/e2e/fault_kill.sh)"}) + "\n")
PY
}

"$train" "$recipe" run.name=straight > straight.log 2>&1 || { cat straight.log; fail "the uninterrupted run failed"; }
ref="runs/straight/checkpoints/step-$(printf %08d $steps)"

# Runs NAME to the end: --resume when it has a checkpoint, else from scratch.
finish() {
  local name="$1" rc
  for attempt in 1 2 3; do
    if ls -d "runs/$name/checkpoints/step-"* > /dev/null 2>&1; then
      "$train" "$recipe" run.name="$name" --resume >> "$name.log" 2>&1; rc=$?
    else
      rm -rf "runs/$name"
      "$train" "$recipe" run.name="$name" >> "$name.log" 2>&1; rc=$?
    fi
    [[ $rc -eq 0 ]] && return 0
  done
  cat "$name.log"; fail "$name: could not finish (last exit $rc)"
}

# The finished run NAME equals the uninterrupted one, bit for bit.
same_as_straight() {
  local name="$1" got="runs/$1/checkpoints/step-$(printf %08d $steps)"
  python3 "$check" "runs/$name" || fail "$name: a checkpoint is corrupt"
  cmp -s "$ref/model.safetensors" "$got/model.safetensors" || fail "$name: final weights differ from the uninterrupted run"
  cmp -s "$ref/optimizer.safetensors" "$got/optimizer.safetensors" || fail "$name: final optimizer state differs"
  python3 - "runs/$name/metrics.jsonl" "$steps" <<'PY' || fail "$name: metrics.jsonl does not hold each step once"
import json, sys
steps = [r["step"] for r in map(json.loads, open(sys.argv[1])) if r["kind"] == "train"]
assert steps == list(range(1, int(sys.argv[2]) + 1)), steps
PY
}

# 1. Killed midway through checkpoint writing.
for n in 1 2 3; do
  name="save$n"
  GRIDLOCK_FAULT="kill_during_save:$n" "$train" "$recipe" run.name="$name" > "$name.log" 2>&1; rc=$?
  [[ $rc -eq 137 ]] || { cat "$name.log"; fail "$name: expected death by SIGKILL (137), got $rc"; }
  ls -d "runs/$name/checkpoints/.tmp-step-"* > /dev/null 2>&1 || fail "$name: the kill did not land inside a save"
  python3 "$check" "runs/$name" || fail "$name: a checkpoint is corrupt after the kill"
  have=$(ls -d "runs/$name/checkpoints/step-"* 2> /dev/null | wc -l)
  [[ $have -eq $((n - 1)) ]] || fail "$name: $have complete checkpoints after dying in save $n"
  finish "$name"
  same_as_straight "$name"
  ls -d "runs/$name/checkpoints/.tmp-"* > /dev/null 2>&1 && fail "$name: a .tmp directory survived the next save"
done
result "SIGKILL midway through writing a checkpoint" "saves 1, 2, 3 (GRIDLOCK_FAULT=kill_during_save:N)" 3 \
  "half-written .tmp dir never listed; resumed from the previous checkpoint (or restarted); final weights and optimizer bit-identical"

# 2. Killed between steps, at seeded random steps.
kill_steps=$(python3 -c "import random; r = random.Random(8); print(*sorted(r.sample(range(1, $steps), 3)))")
for s in $kill_steps; do
  name="step$s"
  GRIDLOCK_FAULT="kill_at_step:$s" "$train" "$recipe" run.name="$name" > "$name.log" 2>&1; rc=$?
  [[ $rc -eq 137 ]] || { cat "$name.log"; fail "$name: expected death by SIGKILL (137), got $rc"; }
  python3 "$check" "runs/$name" || fail "$name: a checkpoint is corrupt after the kill"
  finish "$name"
  same_as_straight "$name"
done
result "SIGKILL after a training step" "steps $kill_steps (seeded; GRIDLOCK_FAULT=kill_at_step:S)" 3 \
  "resumed from the last complete checkpoint; final weights and optimizer bit-identical"

# 3. kill -9 from outside at seeded random times.
start=$(date +%s.%N)
"$train" "$recipe" run.name=timing > timing.log 2>&1 || fail "timing run"
wall=$(python3 -c "import time; print(max(0.2, time.time() - $start))")
delays=$(python3 -c "import random; r = random.Random(20261123); print(*['%.3f' % (r.random() * 0.8 * $wall) for _ in range(12)])")
set -- $delays
kills=0 landed=0
for trial in 1 2 3 4; do
  name="random$trial"
  rm -rf "runs/$name"
  for k in 1 2 3; do
    delay="$1"; shift
    if ls -d "runs/$name/checkpoints/step-"* > /dev/null 2>&1; then
      "$train" "$recipe" run.name="$name" --resume >> "$name.log" 2>&1 &
    else
      rm -rf "runs/$name"
      "$train" "$recipe" run.name="$name" >> "$name.log" 2>&1 &
    fi
    pid=$!
    sleep "$delay"
    kill -9 "$pid" 2> /dev/null
    wait "$pid" 2> /dev/null; rc=$?
    [[ $rc -eq 137 ]] && landed=$((landed + 1))  # else it had already ended (0)
    kills=$((kills + 1))
    python3 "$check" "runs/$name" || fail "$name: a checkpoint is corrupt after kill $k (delay ${delay}s)"
  done
  finish "$name"
  same_as_straight "$name"
done
result "kill -9 from outside at random times" "4 runs x 3 kills, seeded delays in [0, 0.8 x one run's wall time]" "$kills" \
  "$landed of $kills kills hit a live process; every checkpoint valid after each; all runs finished bit-identical"
mv "$rows" "$results/fault_kill.jsonl" || fail "cannot write $results"
echo "PASS ($landed of $kills external kills landed)"
