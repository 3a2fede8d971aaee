#!/usr/bin/env python3
"""Renders docs/reliability.md from what the fault tests recorded.

    render_reliability.py RESULTS_DIR > docs/reliability.md

RESULTS_DIR (BUILD/reliability) holds one *.jsonl file per fault test, one
JSON object per fault tried: fault, where, trials, outcome, ok, test. The
tests write them on every run (test_trainer's "faults: ..." and "numerics:
..." cases, tests/trainer/e2e/fault_kill.sh and fault_signal.sh); this script
only lays them out, so the table is exactly what the last run saw. Exit 1
when a file is missing, short or malformed, or a row is not ok.
"""
import glob
import json
import os
import sys

# file -> the rows its test writes when every check passed
EXPECTED = {"fault_kill": 3, "fault_signal": 2, "numerics": 10, "save_failure": 2, "sigterm_inprocess": 1,
            "spike": 4, "truncated_data": 3}

HEADER = """# Reliability: faults tried and what happened

This page is generated: every row below was written by a test while it ran
(issue 8, items 3 to 5). Regenerate it from the source root after building
in BUILD with

    (cd BUILD && ctest -R "fault|numerics" --output-on-failure)
    python3 tests/trainer/e2e/render_reliability.py BUILD/reliability > docs/reliability.md

## How faults are injected

`GRIDLOCK_FAULT` (read in one place, `FaultPlan::from_env` in
trainer/faults.cpp; documented in trainer/faults.h) is a comma-separated
list of `NAME:N`:

| name | effect |
|---|---|
| `kill_during_save:N` | SIGKILL itself midway through writing its Nth checkpoint (model files written, optimizer state not) |
| `kill_at_step:S` | SIGKILL itself after step S (and its checkpoint) |
| `sigterm_at_step:S` | raise SIGTERM after step S (the real handler runs) |
| `disk_full_save:N` | save N fails as a write would with ENOSPC |
| `readonly_save:N` | save N fails as creating its directory would with EROFS (root ignores chmod; as non-root the test also chmods the directory for real) |
| `nan_grad:S` | one gradient element := NaN after step S's backward |
| `nan_activation:S` | one element of the first linear layer's input := NaN in step S's forward |
| `inf_loss:S` | step S's loss := +inf |
| `loss_spike:S` | the head's input x 30 in step S's forward (a large finite loss) |
| `truncate_data:S` | after step S the first training file is cut to 96 bytes, as another process shrinking it would |

Step faults fire once per process, so a rolled-back step re-runs clean.
External faults are real: `kill -9` and `kill -TERM` / `kill -INT` from the
test script against a running `./train`.

## What the code guarantees

- Checkpoints are written to `checkpoints/.tmp-step-N-PID`, every file
  fsynced, then renamed (trainer/checkpoint.h): a kill at any point leaves
  complete checkpoints only; the next save removes the leftover.
- Data order and all randomness are functions of (seed, step), so a resumed
  run is bit-identical to an uninterrupted one (CPU, one thread).
- A failed save is one line naming the checkpoint directory, the system's
  reason and the intact previous checkpoint.
- Token shards and Megatron .bin files are mmapped; each read first
  fstat()s a descriptor held next to the mapping, so a file truncated
  while in use is an error naming the file and the byte offset instead of
  SIGBUS (a shrink in the microseconds between check and copy is not caught).
- SIGINT/SIGTERM: the step finishes, a checkpoint of it is saved, `./train`
  exits 75 (EX_TEMPFAIL) and prints how to resume; a second signal kills.
- Bad steps (non-finite loss or gradient norm; a loss above
  `train.spike_factor` x the mean of the last `train.spike_window` accepted
  losses, a window saved in each checkpoint so resume stays bit-exact) follow `train.on_nonfinite` / `train.on_spike`: `stop`, `skip`
  (counted), or `rollback` (restore the newest checkpoint, learning rate x
  `train.rollback_lr_factor`, at most `train.max_rollbacks`), each written
  as a `kind: "event"` record to metrics.jsonl and to the report's events
  table.

## Results of the last run
"""


def cell(s):
    return str(s).replace("|", "\\|").replace("\n", " ")


def main():
    d = sys.argv[1]
    rows, bad = [], []
    for name in EXPECTED:
        path = os.path.join(d, name + ".jsonl")
        if not os.path.exists(path):
            bad.append(f"{path}: missing (did its test run?)")
            continue
        recs = [json.loads(line) for line in open(path) if line.strip()]
        if len(recs) < EXPECTED[name]:
            bad.append(f"{path}: {len(recs)} rows, its test writes {EXPECTED[name]} when it passes")
        for r in recs:
            if not r.get("ok"):
                bad.append(f"{path}: not ok: {r}")
            rows.append(r)
    for extra in sorted(glob.glob(os.path.join(d, "*.jsonl"))):
        if os.path.basename(extra)[:-6] not in EXPECTED:
            rows.extend(json.loads(line) for line in open(extra) if line.strip())
    if bad:
        print("\n".join(bad), file=sys.stderr)
        return 1
    out = [HEADER, "| fault | where / how | times | what happened | test |", "|---|---|---|---|---|"]
    for r in rows:
        out.append("| " + " | ".join(cell(r[k]) for k in ("fault", "where", "trials", "outcome", "test")) + " |")
    total = sum(int(r["trials"]) for r in rows)
    out.append("")
    out.append(f"{len(rows)} rows, {total} faults in all, every one handled as described.")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
