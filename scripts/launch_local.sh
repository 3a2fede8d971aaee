#!/usr/bin/env bash
# Starts N copies of a command on this machine as one data-parallel group,
# the way `torchrun --nproc-per-node N --no-python` does: each copy gets
# RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR=127.0.0.1 and MASTER_PORT (a
# free port unless MASTER_PORT is set), which select dist/tcp.h's "tcp"
# backend in ./train and the other programs. For machines without MPI
# (with MPI, mpirun is the usual launcher: see dist/comm.h).
#
#   scripts/launch_local.sh N COMMAND [ARGS...]
#   e.g. scripts/launch_local.sh 2 ./train recipes/tiny.yaml
#
# Each rank's GPU is its LOCAL_RANK modulo the visible GPUs; several ranks
# on one GPU work (their gradients then go through host memory). When one
# rank fails the others are stopped, and the exit status is the first
# failing rank's.
set -uo pipefail
if [[ $# -lt 2 || ! "$1" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: scripts/launch_local.sh N COMMAND [ARGS...]  (N >= 1 processes)" >&2
  exit 2
fi
n="$1"
shift
port="${MASTER_PORT:-}"
if [[ -z "$port" ]]; then
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' \
    2>/dev/null) || port=$((20000 + RANDOM % 20000))
fi
pids=()
for ((r = 0; r < n; r++)); do
  RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$@" &
  pids+=($!)
done
status=0
for ((left = n; left > 0; left--)); do
  wait -n
  rc=$?
  if [[ $rc -ne 0 && $status -eq 0 ]]; then
    status=$rc
    echo "launch_local.sh: a rank exited with status $rc; stopping the others" >&2
    kill "${pids[@]}" 2>/dev/null
  fi
done
exit "$status"
