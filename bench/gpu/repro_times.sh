#!/usr/bin/env bash
# Run times of the paper reproduction at full size (issue 7 item 4), in one
# call on a lent GPU machine, which has neither the Pythia checkpoints nor
# the Pile: the timings use a random-initialised Pythia-160m and random
# token ids of the right shapes, since neither the weights' values nor the
# tokens' change the work done. Measured, each with ./train or ./probe
# exactly as docs/reproduction.md runs them:
#   init     a 1-step run that writes the Pythia-160m checkpoint forked from
#   fork     STEPS steps of recipes/pythia160m_int4.yaml with the probe every
#            PROBE_EVERY steps (evaluation + INT4/INT8 probe)
#   plain    the same without evaluation or probe (until the last step)
#   qat      plain with INT4 QAT on (quant.scheme=int4_probe)
#   hostsync plain with train.sync_free=false: the host reads each step's
#            loss and gradient norm before queueing the next (what the
#            sync-free steps that plain runs by default save)
#   audit1 / audit3   ./probe recipes/pythia160m_audit.yaml over 1 and 3
#            checkpoints of AUDIT_WINDOWS x 2048 tokens (WikiText-2's test
#            split is about 140 windows with Pythia's tokenizer)
# and from them, by arithmetic printed alongside (so a reader can redo
# it): seconds per training step, per evaluation+probe, per audited
# checkpoint, then a 2000-step fork run with 40 probes, the nine-run fork
# experiment, its QAT variant, and the 154-checkpoint audit.
#
#   bench/gpu/repro_times.sh [BUILD_DIR]      (default build-gpu)
#
# BUILD_DIR holds apps/gridlock_train and apps/gridlock_probe (built on a CPU
# machine and carried, as for bench/gpu/run.sh). Environment: DEVICE (cuda),
# TRAIN_FLAGS ("run.tf32=true": the recipes' setting), STEPS (100),
# PROBE_EVERY (50), AUDIT_WINDOWS (140), OUT_DIR (default $OUT or
# bench/gpu/out). MODEL_ARGS (empty) and SEQ (2048) exist so that the
# script itself can be tried on a CPU with a small model, e.g.
#   DEVICE=cpu TRAIN_FLAGS=run.tf32=false MODEL_ARGS="model.preset=pythia-14m model.max_positions=64" \
#   SEQ=64 STEPS=4 PROBE_EVERY=2 AUDIT_WINDOWS=2 bench/gpu/repro_times.sh build
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
build="${1:-build-gpu}"
device="${DEVICE:-cuda}"
read -r -a flags <<<"${TRAIN_FLAGS:-run.tf32=true}"
read -r -a model_args <<<"${MODEL_ARGS:-}"
seq_len="${SEQ:-2048}"
steps="${STEPS:-100}"
probe_every="${PROBE_EVERY:-50}"
windows="${AUDIT_WINDOWS:-140}"
out="$(mkdir -p "${OUT_DIR:-${OUT:-bench/gpu/out}}" && cd "${OUT_DIR:-${OUT:-bench/gpu/out}}" && pwd)"
work="$out/repro_work"
rm -rf "$work" && mkdir -p "$work/data" "$work/ckpts"
[[ -n "${GRIDLOCK_LIB_DIR:-}" ]] && export LD_LIBRARY_PATH="$GRIDLOCK_LIB_DIR:${LD_LIBRARY_PATH:-}"
train="$build/apps/gridlock_train" probe="$build/apps/gridlock_probe"
for b in "$train" "$probe"; do [[ -x "$b" ]] || { echo "repro_times: $b missing" >&2; exit 1; }; done

# Random ids in Pythia's layout: sequences of 2049 uint16 tokens (vocab
# 50277), training sequences first, validation from 4 * (steps + 1) on.
n_train=$(( 4 * (steps + 1) ))
python3 - "$work" "$n_train" "$windows" "$seq_len" <<'PY'
import random, struct, sys
work, n_train, windows, T = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(0)
n = n_train + 16 * 4 + 8
sizes = [2049] * n
with open(f"{work}/data/document.bin", "wb") as f:
    for _ in range(n):
        f.write(struct.pack("<2049H", *[rng.randrange(50277) for _ in range(2049)]))
with open(f"{work}/data/document.idx", "wb") as f:
    f.write(b"MMIDIDX\0\0" + struct.pack("<QBQQ", 1, 8, n, n + 1))
    f.write(struct.pack(f"<{n}i", *sizes))
    f.write(struct.pack(f"<{n}q", *[i * 2049 * 2 for i in range(n)]))
    f.write(struct.pack(f"<{n + 1}q", *range(n + 1)))
with open(f"{work}/audit_tokens.u16", "wb") as f:
    m = windows * T + 1
    f.write(struct.pack(f"<{m}H", *[rng.randrange(50277) for _ in range(m)]))
PY

common=(run.out_dir="$work/runs" run.device="$device" "${flags[@]}" "${model_args[@]}"
        data.paths="[$work/data/document]" data.seq_len="$seq_len" data.fork_step=0
        data.val_start="$n_train" schedule.params.offset=0 train.keep_last=0 train.log_every=1)
timed() {  # NAME CMD...: runs CMD, logs to NAME.log, prints the wall seconds
  local name="$1" t0 t1
  shift
  t0=$(date +%s.%N)
  "$@" >"$out/repro_$name.log" 2>&1 || { tail -20 "$out/repro_$name.log" >&2; echo "repro_times: $name failed" >&2; exit 1; }
  t1=$(date +%s.%N)
  python3 -c "print(f'{$t1 - $t0:.2f}')"
}
echo "== init: a random Pythia-160m checkpoint"
timed init "$train" recipes/pythia160m_int4.yaml "${common[@]}" run.name=init train.init_from= \
  train.steps=1 train.save_every=1 train.eval_every=0 quant.probe_every=-1 >/dev/null
ckpt="$work/runs/init/checkpoints/step-00000001"
init=(train.init_from="$ckpt")

echo "== fork: $steps steps, probe every $probe_every"
t_fork=$(timed fork "$train" recipes/pythia160m_int4.yaml "${common[@]}" "${init[@]}" run.name=fork \
  train.steps="$steps" train.save_every="$steps" train.eval_every="$probe_every" quant.probe_every="$probe_every")
echo "== plain: $steps steps, evaluation and probe only at the end"
t_plain=$(timed plain "$train" recipes/pythia160m_int4.yaml "${common[@]}" "${init[@]}" run.name=plain \
  train.steps="$steps" train.save_every="$steps" train.eval_every=0 quant.probe_every=0)
echo "== qat: the same with INT4 QAT"
t_qat=$(timed qat "$train" recipes/pythia160m_int4.yaml "${common[@]}" "${init[@]}" run.name=qat \
  train.steps="$steps" train.save_every="$steps" train.eval_every=0 quant.probe_every=0 quant.scheme=int4_probe)

echo "== hostsync: plain with host-synchronised steps (train.sync_free=false)"
t_host=$(timed hostsync "$train" recipes/pythia160m_int4.yaml "${common[@]}" "${init[@]}" run.name=hostsync \
  train.steps="$steps" train.save_every="$steps" train.eval_every=0 quant.probe_every=0 train.sync_free=false)

echo "== audit over 1 and 3 checkpoints of $windows windows"
# Pythia step directories hold only config.json and model.safetensors (the
# step is then the number in the name), as these copies do.
for s in 0 1000 2000; do
  mkdir -p "$work/ckpts/step$s"
  ln "$ckpt/config.json" "$ckpt/model.safetensors" "$work/ckpts/step$s/"
done
audit=(audit.data="$work/audit_tokens.u16" audit.device="$device" audit.context="$seq_len")
t_a1=$(timed audit1 "$probe" recipes/pythia160m_audit.yaml "${audit[@]}" audit.checkpoints="$work/ckpts" \
  audit.steps="[0]" audit.out="$work/audit1")
t_a3=$(timed audit3 "$probe" recipes/pythia160m_audit.yaml "${audit[@]}" audit.checkpoints="$work/ckpts" \
  audit.out="$work/audit3")

python3 - "$work/runs" "$out" "$steps" "$probe_every" "$t_fork" "$t_plain" "$t_qat" "$t_a1" "$t_a3" "$device" "$t_host" <<'PY'
import json, sys
runs, out = sys.argv[1], sys.argv[2]
steps, every = int(sys.argv[3]), int(sys.argv[4])
t_fork, t_plain, t_qat, t_a1, t_a3 = map(float, sys.argv[5:10])
device, t_host = sys.argv[10], float(sys.argv[11])
def step_seconds(run):
    # Training time per step from the trainer's own clock (elapsed_s counts
    # the steps only), past a warm-up of a tenth of the run.
    recs = [json.loads(l) for l in open(f"{runs}/{run}/metrics.jsonl") if '"kind": "train"' in l or '"kind":"train"' in l]
    recs = [r for r in recs if r["kind"] == "train"]
    w = max(1, len(recs) // 10)
    a, b = recs[w - 1], recs[-1]
    return (b["elapsed_s"] - a["elapsed_s"]) / (b["step"] - a["step"])
s_plain, s_qat, s_host = step_seconds("plain"), step_seconds("qat"), step_seconds("hostsync")
n_probes = steps // every
probe = (t_fork - t_plain) / max(n_probes - 1, 1)  # the plain run also probes once, at the end
startup = t_plain - steps * s_plain - probe
per_ckpt = (t_a3 - t_a1) / 2
fork_run = startup + 2000 * s_plain + 40 * probe
qat_run = startup + 2000 * s_qat + 40 * probe
audit154 = t_a1 - per_ckpt + 154 * per_ckpt
res = dict(device=device, steps=steps, probe_every=every, wall_fork=t_fork, wall_plain=t_plain, wall_qat=t_qat,
           wall_audit1=t_a1, wall_audit3=t_a3, step_s=s_plain, step_qat_s=s_qat, probe_s=probe,
           wall_hostsync=t_host, step_hostsync_s=s_host,
           startup_s=startup, audit_ckpt_s=per_ckpt, fork_run_s=fork_run, qat_fork_run_s=qat_run,
           experiment_9_s=9 * fork_run, qat_experiment_9_more_s=9 * qat_run, audit_154_s=audit154)
json.dump(res, open(f"{out}/repro_times.json", "w"), indent=1)
m = lambda s: f"{s / 60:.1f} min" if s < 5400 else f"{s / 3600:.2f} h"
print(f"""
measured ({device}): {steps}-step fork {t_fork:.1f} s ({n_probes} evaluations + probes), without them {t_plain:.1f} s, with QAT {t_qat:.1f} s;
  audit of 1 checkpoint {t_a1:.1f} s, of 3 {t_a3:.1f} s
per unit: training step {s_plain:.3f} s (QAT {s_qat:.3f} s; host-synchronised {s_host:.3f} s, sync-free saves {1 - s_plain / s_host:.1%}),
  evaluation + probe {probe:.1f} s,
  start-up {startup:.1f} s, audited checkpoint {per_ckpt:.1f} s
| what | arithmetic | time |
| --- | --- | --- |
| one fork run (2000 steps, 40 probes) | startup + 2000 x step + 40 x probe | {m(fork_run)} |
| the fork experiment (9 runs, one at a time) | 9 x fork run | {m(9 * fork_run)} |
| its QAT variants (9 more runs) | 9 x (startup + 2000 x QAT step + 40 x probe) | {m(9 * qat_run)} |
| the audit (154 checkpoints) | (audit1 - per checkpoint) + 154 x per checkpoint | {m(audit154)} |
(checkpoint saves every 500 steps are in the measured runs once, at the end; not counted 4 times)""")
PY
