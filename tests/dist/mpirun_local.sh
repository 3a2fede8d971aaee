#!/usr/bin/env bash
# Runs a program on NP ranks of this machine under an MPI launcher, for the
# tests (tests/CMakeLists.txt), and fails loudly with the reason when the
# launcher cannot start the ranks: never a silent pass.
#
#   mpirun_local.sh [--expect-rc N] [--expect-output TEXT] MPIEXEC NP PROGRAM [ARGS...]
#
# The run passes when the launcher exits with N (default 0) and, if given,
# its output contains TEXT (the program's own "all checks passed" line, so a
# launcher that exits 0 without running the checks is a failure). Exit 77
# from the ranks, with "skipped" in the output, passes through as 77.
#
# Open MPI 4.1 in a container needs (all set through OMPI_* variables, so
# the command line stays the same for MPICH, which ignores them):
#   OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM)=1   CI runs as root; mpirun refuses otherwise
#   OMPI_MCA_plm=isolated                start ranks locally, never via ssh/rsh
#                                        (containers often have no ssh client)
#   OMPI_MCA_pml=ob1, OMPI_MCA_btl=self,vader
#                                        shared memory only: no probing of UCX,
#                                        InfiniBand or TCP devices (warnings,
#                                        slow start-up, or failures in containers)
#   OMPI_MCA_btl_vader_single_copy_mechanism=none
#                                        vader's CMA copies need ptrace rights
#                                        between ranks that containers deny
#   OMPI_MCA_rmaps_base_oversubscribe=1, OMPI_MCA_hwloc_base_binding_policy=none
#                                        more ranks than cores (2-core CI), and no
#                                        pinning of ranks onto the same cores
# Variables already set by the caller win. LeakSanitizer is off for the ranks:
# Open MPI keeps allocations alive past exit, which a sanitizer build would
# report as leaks of the test.
set -u

expect_rc=0
expect_output=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --expect-rc) expect_rc="$2"; shift 2 ;;
    --expect-output) expect_output="$2"; shift 2 ;;
    *) break ;;
  esac
done
if [[ $# -lt 3 ]]; then
  echo "usage: $0 [--expect-rc N] [--expect-output TEXT] MPIEXEC NP PROGRAM [ARGS...]" >&2
  exit 2
fi
mpiexec="$1" np="$2"
shift 2

: "${OMPI_ALLOW_RUN_AS_ROOT:=1}" "${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:=1}"
: "${OMPI_MCA_plm:=isolated}" "${OMPI_MCA_pml:=ob1}" "${OMPI_MCA_btl:=self,vader}"
: "${OMPI_MCA_btl_vader_single_copy_mechanism:=none}"
: "${OMPI_MCA_rmaps_base_oversubscribe:=1}" "${OMPI_MCA_hwloc_base_binding_policy:=none}"
export OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM OMPI_MCA_plm OMPI_MCA_pml \
  OMPI_MCA_btl OMPI_MCA_btl_vader_single_copy_mechanism OMPI_MCA_rmaps_base_oversubscribe \
  OMPI_MCA_hwloc_base_binding_policy
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"

if ! command -v "$mpiexec" >/dev/null 2>&1; then
  echo "mpirun_local: MPI launcher '$mpiexec' not found" >&2
  exit 1
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "mpirun_local: $mpiexec -n $np $*"
start_ns=$(date +%s%N)
# A rank stuck in a collective would otherwise hang until ctest's timeout.
timeout -k 10 120 "$mpiexec" -n "$np" "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
elapsed_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
echo "mpirun_local: exit code $rc after ${elapsed_ms} ms"

if [[ $rc -eq 124 || $rc -eq 137 ]]; then
  echo "mpirun_local: FAILED: timed out after 120 s (a rank waiting in a collective?)" >&2
  exit 1
fi
# Every rank exited 77 (a check that needs hardware this machine lacks, and
# said so): ctest's SKIP_RETURN_CODE, reported as skipped, never passed.
if [[ $rc -eq 77 && $expect_rc -ne 77 ]] && grep -q "skipped" "$log"; then
  echo "mpirun_local: skipped"
  exit 77
fi
if [[ $rc -ne $expect_rc ]]; then
  echo "mpirun_local: FAILED: exit code $rc, expected $expect_rc (see the launcher's output" \
       "above: the ranks could not be started, or a rank failed)" >&2
  exit 1
fi
if [[ -n "$expect_output" ]] && ! grep -qF -- "$expect_output" "$log"; then
  echo "mpirun_local: FAILED: the output lacks '$expect_output'" >&2
  exit 1
fi
echo "mpirun_local: passed"
