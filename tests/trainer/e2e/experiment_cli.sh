#!/usr/bin/env bash
# ./experiment end to end (issue 7 item 2) on experiment_tiny.yaml: 2 arms
# (cosine, oli) x 2 seeds of seconds-long small.yaml runs, 2 at a time.
#   1. usage and file errors: exit codes, one line, did-you-mean
#   2. an interrupted sweep: every run SIGKILLs itself after step 6
#      (GRIDLOCK_FAULT=kill_at_step:6, trainer/trainer.h), leaving its step-4
#      checkpoint; the runner reports the failures (exit 1)
#   3. resume: --max-runs 1 finishes one run (resumed from step 4), the next
#      invocation the other three, the third launches nothing; no probe step
#      is recorded twice in any run
#   4. a finished run is not reused under other ./train arguments
#   5. the statistics: pairs of the t-tests (cool probes of oli: steps 4, 8,
#      12 per seed), the t statistic recomputed here from the metrics files,
#      the wins table, the figures
#
#   experiment_cli.sh GRIDLOCK_EXPERIMENT GRIDLOCK_TRAIN SOURCE_DIR WORK_DIR
set -uo pipefail
exp_bin="$1" train="$2" src="$3" work="$4"
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
file="$src/tests/trainer/e2e/experiment_tiny.yaml"
common=(--train "$train" experiment.out_dir="$work/out"
        "experiment.overrides=[train.steps=12, train.eval_every=2, quant.probe_every=2, train.log_every=2, data.cache_dir=$work/cache]")
exp="$work/out/tiny"

"$exp_bin" --help > help.txt 2>&1 || fail "--help exited $?"
grep -q "usage: ./experiment" help.txt || fail "--help prints no usage"
"$exp_bin" --bogus > out.txt 2>&1; rc=$?
[[ $rc -eq 2 ]] || fail "unknown flag: exit $rc, expected 2"
"$exp_bin" "$file" experiment.paralel=3 > out.txt 2>&1; rc=$?
[[ $rc -eq 1 ]] || fail "misspelled key: exit $rc, expected 1"
[[ $(wc -l < out.txt) -eq 1 ]] || { cat out.txt; fail "misspelled key: not one line"; }
grep -q "command line: unknown key 'experiment.paralel' (did you mean 'experiment.parallel'?)" out.txt ||
  { cat out.txt; fail "misspelled key message"; }
"$exp_bin" "$file" experiment.parallel=0 > out.txt 2>&1; rc=$?
[[ $rc -eq 1 ]] && grep -q "experiment.parallel: expected an integer >= 1, got '0'" out.txt ||
  { cat out.txt; fail "parallel=0: exit $rc"; }
printf 'experiment: {name: x, seeds: [1]}\narms:\n  - {name: a, recipe: missing.yaml}\n' > bad.yaml
"$exp_bin" bad.yaml > out.txt 2>&1; rc=$?
[[ $rc -eq 1 ]] && grep -q "bad.yaml:3: arm 'a' recipe 'missing.yaml'" out.txt || { cat out.txt; fail "missing recipe: exit $rc"; }
[[ ! -e out ]] || fail "an error created the output directory"

"$exp_bin" "$file" "${common[@]}" --dry-run > dry.txt 2>&1 || { cat dry.txt; fail "--dry-run"; }
[[ $(grep -c "run.name=" dry.txt) -eq 4 ]] || { cat dry.txt; fail "--dry-run: expected 4 commands"; }
grep -q "small_oli.yaml run.seed=12 train.threads=1 .* run.name=oli_s12" dry.txt || { cat dry.txt; fail "--dry-run command"; }

# The Pythia recipes and experiment files load (schema, schedules, arms).
for r in pythia160m_int4 pythia160m_int4_sgdr pythia160m_int4_oli; do
  "$train" "$src/recipes/$r.yaml" --print-recipe > out.txt 2>&1 || { cat out.txt; fail "recipes/$r.yaml does not load"; }
  "$train" "$src/recipes/$r.yaml" quant.scheme=int4_probe --print-recipe > out.txt 2>&1 || { cat out.txt; fail "recipes/$r.yaml with QAT"; }
done
"$exp_bin" "$src/recipes/pythia160m_experiment.yaml" --train "$train" --dry-run > out.txt 2>&1 &&
  [[ $(grep -c "run.name=" out.txt) -eq 9 ]] || { cat out.txt; fail "pythia160m_experiment.yaml: expected 9 runs"; }
grep -q "pythia160m_int4_oli.yaml run.seed=3 data.fork_offset=16384 " out.txt || { cat out.txt; fail "seed offsets"; }
"$exp_bin" "$src/recipes/pythia160m_qat_experiment.yaml" --train "$train" --dry-run > out.txt 2>&1 &&
  [[ $(grep -c "quant.scheme=int4_probe" out.txt) -eq 9 && $(grep -c "run.name=" out.txt) -eq 18 ]] ||
  { cat out.txt; fail "pythia160m_qat_experiment.yaml: expected 18 runs, 9 with QAT"; }

# 2. Interrupted sweep.
GRIDLOCK_FAULT=kill_at_step:6 "$exp_bin" "$file" "${common[@]}" > killed.txt 2>&1; rc=$?
[[ $rc -eq 1 ]] || { cat killed.txt; fail "killed runs: exit $rc, expected 1"; }
[[ $(grep -c "FAILED" killed.txt) -eq 4 ]] || { cat killed.txt; fail "expected 4 failed runs"; }
for r in cosine_s11 cosine_s12 oli_s11 oli_s12; do
  [[ -d "$exp/runs/$r/checkpoints/step-00000004" ]] || fail "$r: no step-4 checkpoint after the kill"
  [[ ! -e "$exp/runs/$r/experiment_done.json" ]] || fail "$r: marked done after being killed"
done
grep -q "0/4 runs finished" killed.txt || { cat killed.txt; fail "killed sweep summary"; }

# 3. Resume, one run at a time, then the rest, then nothing.
"$exp_bin" "$file" "${common[@]}" --max-runs 1 > r1.txt 2>&1 || { cat r1.txt; fail "--max-runs 1 exited $?"; }
[[ $(grep -c "^start .*(resuming)" r1.txt) -eq 1 ]] || { cat r1.txt; fail "--max-runs 1: expected one resumed run"; }
grep -q "1/4 runs finished" r1.txt || { cat r1.txt; fail "--max-runs 1 summary"; }
"$exp_bin" "$file" "${common[@]}" > r2.txt 2>&1 || { cat r2.txt; fail "resume exited $?"; }
grep -q "4 runs, 1 finished, 3 to run" r2.txt || { cat r2.txt; fail "resume did not skip the finished run"; }
[[ $(grep -c "^start .*(resuming)" r2.txt) -eq 3 ]] || { cat r2.txt; fail "expected 3 resumed runs"; }
grep -q "4/4 runs finished" r2.txt || { cat r2.txt; fail "resume summary"; }
grep -q "resuming .*step-00000004 at step 4" "$exp/logs/oli_s12.log" || fail "oli_s12 did not resume at step 4"
"$exp_bin" "$file" "${common[@]}" > r3.txt 2>&1 || { cat r3.txt; fail "third invocation exited $?"; }
grep -q "4 runs, 4 finished, 0 to run" r3.txt || { cat r3.txt; fail "finished runs launched again"; }
! grep -q "^start" r3.txt || { cat r3.txt; fail "a finished run was launched again"; }

# 4. Statistics and report, checked against the metrics files.
for f in report.md stats.json fig_1_gap_pct_int4_probe_g32_vs_step_every_run.svg; do
  [[ -s "$exp/$f" ]] || fail "missing $exp/$f"
done
grep -q "<polyline\|<path" "$exp/fig_1_gap_pct_int4_probe_g32_vs_step_every_run.svg" || fail "figure 1 draws nothing"
grep -q "| oli | cosine | cool | 6 |" "$exp/report.md" || { cat "$exp/report.md"; fail "report: cool-phase t-test row"; }
python3 - "$exp" <<'PY' || fail "statistics do not match the metrics files"
import json, math, sys
exp = sys.argv[1]
metric = "gap_pct_int4_probe:g32"
def probes(run):
    out = {}
    for line in open(f"{exp}/runs/{run}/metrics.jsonl"):
        r = json.loads(line)
        if r["kind"] == "quant":
            assert r["step"] not in out, (run, "probe step recorded twice", r["step"])
            out[r["step"]] = r[metric]
    return out
p = {r: probes(r) for r in ["cosine_s11", "cosine_s12", "oli_s11", "oli_s12"]}
for r, v in p.items():
    assert sorted(v) == [2, 4, 6, 8, 10, 12], (r, sorted(v))
# oli: period 4, hot for t mod 4 < 2; the probe at step s follows update s-1:
# cool at s = 4, 8, 12.
d = [p[f"oli_s{s}"][k] - p[f"cosine_s{s}"][k] for s in (11, 12) for k in (4, 8, 12)]
n = len(d); m = sum(d) / n
sd = math.sqrt(sum((x - m) ** 2 for x in d) / (n - 1))
t = m / (sd / math.sqrt(n))
st = json.load(open(f"{exp}/stats.json"))
cool = [c for c in st["comparisons"] if c["phase"] == "cool"][0]
assert cool["n"] == 6 and cool["dof"] == 5, cool
assert abs(cool["t"] - t) <= 1e-9 * max(1, abs(t)), (cool["t"], t)
assert abs(cool["mean_diff"] - m) <= 1e-12 * max(1, abs(m)), (cool["mean_diff"], m)
assert cool["wins"] == sum(x < 0 for x in d), (cool["wins"], d)
assert 0 <= cool["p_two_sided"] <= 1
anyc = [c for c in st["comparisons"] if c["phase"] == "any"][0]
assert anyc["n"] == 12, anyc
w = [x for x in st["wins"] if x["arm"] == "oli" and x["against"] == "cosine"][0]
wins = sum(p[f"oli_s{s}"][12] < p[f"cosine_s{s}"][12] for s in (11, 12))
assert w["pairs"] == 2 and w["final_wins"] == wins, (w, wins)
for r in st["runs"]:
    assert r["finished"] and r["final"] == p[r["name"]][12], r
print("t", t, "n", n, "wins", wins)
PY
# A finished run made with other arguments is never reused silently.
"$exp_bin" "$file" "${common[@]}" --set train.log_every=3 > r5.txt 2>&1; rc=$?
[[ $rc -eq 1 ]] && grep -q "finished with other ./train arguments" r5.txt || { cat r5.txt; fail "changed arguments: exit $rc"; }
cp "$exp/report.md" report1.md
"$exp_bin" "$file" "${common[@]}" --report-only > r4.txt 2>&1 || { cat r4.txt; fail "--report-only exited $?"; }
cmp -s report1.md "$exp/report.md" || fail "--report-only changed the report (not deterministic)"
echo "PASS"
