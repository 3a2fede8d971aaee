#!/usr/bin/env bash
# The checkpoint audit end to end (issue 7 item 1): ./probe AUDIT.yaml over
# the 4 checkpoints of a short ./train run.
#   1. audit-file errors: unknown key (one line, did-you-mean), a probe flag
#      next to an audit file (usage error)
#   2. an uninterrupted audit: table.csv (one row per checkpoint), figures,
#      audit_summary.json whose Pearson r is recomputed here from table.csv
#   3. an interrupted one: --max-models 1, then a process SIGKILLed in the
#      middle of writing its 2nd record, then a rerun that evaluates only steps 6 and
#      8 and ends with the same table.csv as the uninterrupted audit (bin
#      flips included); a third run evaluates nothing
#   4. a rerun with other formats is refused (its records would mix)
#
#   audit_cli.sh GRIDLOCK_PROBE GRIDLOCK_TRAIN SOURCE_DIR WORK_DIR
set -uo pipefail
probe="$1" train="$2" src="$3" work="$4"
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
file="$src/tests/trainer/e2e/audit_tiny.yaml"
"$train" "$src/tests/trainer/e2e/small.yaml" run.out_dir="$work/runs" data.cache_dir="$work/cache" \
  train.save_every=2 > train.log 2>&1 || { cat train.log; fail "the training run failed"; }
common=(audit.checkpoints="$work/runs/small" audit.data="$work/cache/kjv-v512/val.gltok")

"$probe" "$file" "${common[@]}" audit.formatz=x > out.txt 2>&1; rc=$?
[[ $rc -eq 1 && $(wc -l < out.txt) -eq 1 ]] || { cat out.txt; fail "unknown key: exit $rc"; }
grep -q "command line: unknown key 'audit.formatz' (did you mean 'audit.formats'?)" out.txt || { cat out.txt; fail "unknown key message"; }
"$probe" "$file" "${common[@]}" --batch 2 > out.txt 2>&1; rc=$?
[[ $rc -eq 2 ]] && grep -q "with an audit file: set the audit.\* key" out.txt || { cat out.txt; fail "flag with an audit file: exit $rc"; }

# recipes/pythia160m_audit.yaml passes the key checks (it then stops at
# the missing checkpoint folder).
"$probe" "$src/recipes/pythia160m_audit.yaml" audit.device=cpu > out.txt 2>&1; rc=$?
[[ $rc -eq 1 ]] && grep -q "model directory 'checkpoints/pythia-160m': no such directory" out.txt ||
  { cat out.txt; fail "pythia160m_audit.yaml: exit $rc"; }

# 2. Uninterrupted.
"$probe" "$file" "${common[@]}" audit.out=full > full.txt 2>&1 || { cat full.txt; fail "the audit failed"; }
[[ $(grep -c "^\[[0-9]/4\] step" full.txt) -eq 4 ]] || { cat full.txt; fail "expected 4 checkpoints"; }
for f in probe.jsonl probe.csv table.csv report.html audit_summary.json probe_config.json \
         fig_1_int4_probe_g32_gap_vs_checkpoint_step.svg fig_4_kurtosis_vs_int4_probe_g32_gap.svg; do
  [[ -s full/$f ]] || fail "missing full/$f"
done
grep -q "Pearson r: mean kurtosis vs int4_probe:g32 gap" full/report.html || fail "report.html: no Pearson r"
python3 - full <<'PY' || fail "audit table / Pearson r"
import csv, json, math, sys
rows = list(csv.DictReader(open(sys.argv[1] + "/table.csv")))
assert [int(r["step"]) for r in rows] == [2, 4, 6, 8], rows
for r in rows:
    fp, q = float(r["fp_ppl"]), float(r["ppl_int4_probe:g32"])
    assert abs(float(r["gap_pct_int4_probe:g32"]) - (q - fp) / fp * 100) < 1e-6, r
    assert 0 < float(r["grid_dist_int4_probe:g32"]) <= 0.5, r
assert rows[0]["bin_flips_int4_probe:g32"] == "" and float(rows[1]["bin_flips_int4_probe:g32"]) > 0
x = [float(r["mean_kurtosis"]) for r in rows]; y = [float(r["gap_pct_int4_probe:g32"]) for r in rows]
mx, my = sum(x) / 4, sum(y) / 4
r = sum((a - mx) * (b - my) for a, b in zip(x, y)) / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))
s = json.load(open(sys.argv[1] + "/audit_summary.json"))
assert s["kurtosis_gap_n"] == 4 and abs(s["kurtosis_gap_pearson_r"] - r) < 1e-6, (s, r)
i = min(range(4), key=lambda k: y[k])
assert s["min_gap_step"] == int(rows[i]["step"]) and abs(s["min_gap"] - y[i]) < 1e-6, s
assert abs(s["final_gap"] - y[3]) < 1e-6 and s["fp_converged_step"] in (2, 4, 6, 8), s
PY

# 3. Interrupted, torn, resumed. --max-models 1, then a run SIGKILLed in the
# middle of writing its 2nd record (GRIDLOCK_PROBE_FAULT, apps/probe.cpp):
# steps 2 and 4 on disk, a torn half record of step 6.
"$probe" "$file" "${common[@]}" audit.out=res --max-models 1 > r1.txt 2>&1 || { cat r1.txt; fail "--max-models 1 failed"; }
[[ $(grep -c "^\[[0-9]/4\] step" r1.txt) -eq 1 ]] || { cat r1.txt; fail "--max-models 1 evaluated other than 1"; }
grep -q "3 model(s) not evaluated yet" r1.txt || { cat r1.txt; fail "--max-models: no note"; }
GRIDLOCK_PROBE_FAULT=torn_record:2 "$probe" "$file" "${common[@]}" audit.out=res > r1b.txt 2>&1; rc=$?
[[ $rc -eq 137 ]] || { cat r1b.txt; fail "the killed audit: exit $rc, expected 137 (SIGKILL)"; }
[[ $(wc -l < res/probe.jsonl) -eq 2 ]] && [[ -n "$(tail -c 1 res/probe.jsonl)" ]] ||
  { cat res/probe.jsonl; fail "expected 2 records and a torn third"; }
"$probe" "$file" "${common[@]}" audit.out=res > r2.txt 2>&1 || { cat r2.txt; fail "the resumed audit failed"; }
grep -q "warning: .*probe.jsonl" r2.txt || { cat r2.txt; fail "the torn line was not reported"; }
grep -q "skipped 2 model(s) already in" r2.txt || { cat r2.txt; fail "resume did not skip 2"; }
[[ $(grep -c "^\[[0-9]/4\] step" r2.txt) -eq 2 ]] && grep -q "^\[3/4\] step 6" r2.txt && grep -q "^\[4/4\] step 8" r2.txt ||
  { cat r2.txt; fail "resume evaluated other than steps 6 and 8"; }
cmp full/table.csv res/table.csv || fail "the resumed table differs from the uninterrupted one"
cmp full/probe.csv res/probe.csv || fail "the resumed probe.csv differs"
[[ $(wc -l < res/probe.jsonl) -eq 4 ]] || fail "probe.jsonl: expected 4 lines"
"$probe" "$file" "${common[@]}" audit.out=res > r3.txt 2>&1 || { cat r3.txt; fail "third run failed"; }
! grep -q "^\[[0-9]/4\] step" r3.txt && grep -q "skipped 4 model(s)" r3.txt || { cat r3.txt; fail "a finished checkpoint was evaluated again"; }

# 4. Other settings on the same output: refused.
"$probe" "$file" "${common[@]}" audit.out=res "audit.formats=[int4_probe:g32]" > r4.txt 2>&1; rc=$?
[[ $rc -eq 1 ]] && grep -q "made with other settings" r4.txt || { cat r4.txt; fail "mismatched resume: exit $rc"; }
# A subset of steps.
"$probe" "$file" "${common[@]}" audit.out=sub "audit.steps=[4, 8]" > s.txt 2>&1 || { cat s.txt; fail "audit.steps"; }
[[ $(grep -c "^\[[0-9]/2\] step" s.txt) -eq 2 ]] || { cat s.txt; fail "audit.steps: expected 2"; }
echo "PASS"
