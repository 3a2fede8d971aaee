#!/usr/bin/env bash
# One fuzz target under ctest: replay every committed regression input
# (each once), then fuzz for SECONDS from the committed seeds. The seeds
# directory is read only; new corpus entries and any crash input go to
# WORK_DIR, which is emptied first. Fixed -seed so a CI run can be replayed.
#
#   run_fuzzer.sh TARGET SEED_DIR REGRESSION_DIR WORK_DIR SECONDS
set -uo pipefail
target="$1" seeds="$2" regressions="$3" work="$4" seconds="$5"
name="$(basename "$target")"
rm -rf "$work" && mkdir -p "$work/new" || exit 1
cd "$work" || exit 1
opts=(-rss_limit_mb=2048 -timeout=10 -seed="${GL_FUZZ_SEED:-1}" -artifact_prefix="$work/")

shopt -s nullglob
inputs=("$regressions"/*)
if [[ ${#inputs[@]} -gt 0 ]]; then
  if ! "$target" "${opts[@]}" "${inputs[@]}" >regressions.log 2>&1; then
    tail -40 regressions.log
    echo "FAIL: $name crashes again on a committed regression input ($regressions)"
    exit 1
  fi
  echo "$name: ${#inputs[@]} regression inputs replayed cleanly"
fi

"$target" "${opts[@]}" -max_total_time="$seconds" -print_final_stats=1 "$work/new" "$seeds" \
  >fuzz.log 2>&1
rc=$?
grep -E "^stat::number_of_executed_units|^Done|cov:" fuzz.log | tail -3
if [[ $rc -ne 0 ]]; then
  tail -60 fuzz.log
  crash=( "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* )
  echo "FAIL: $name found a crash; input saved as ${crash[*]:-?}. Fix the parser, then add the" \
       "input to fuzz/regressions/${name#fuzz_}/ (replayed by every run)."
  exit 1
fi
echo "$name: $seconds s of fuzzing, no finding"
