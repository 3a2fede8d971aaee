#!/usr/bin/env bash
# ./train's command line end to end (issue 4 items 1, 5, 6, 8): usage and
# recipe errors (one line, exit codes), the Pythia recipe stopping at once
# when its inputs are missing, a short run on the Debian corpus writing
# metrics, checkpoints and the report, and --resume continuing it.
#
# Then QAT end to end: a run trained with quant.scheme=q4_0 exports to GGUF
# Q4_0, and ./export refuses another format for it (QAT only pays off when
# deployment uses the scheme training simulated), reading the scheme from the
# checkpoint's recipe.
#
#   train_cli.sh GRIDLOCK_TRAIN GRIDLOCK_EXPORT SOURCE_DIR WORK_DIR
set -uo pipefail
train="$1" export_bin="$2" src="$3" work="$4"
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
recipe="$src/tests/trainer/e2e/small.yaml"
common=(run.out_dir="$work/runs" data.cache_dir="$work/cache")

"$train" --help > help.txt 2>&1 || fail "--help exited $?"
grep -q "usage: ./train" help.txt || fail "--help prints no usage"

"$train" --bogus > out.txt 2>&1; rc=$?
[[ $rc -eq 2 ]] || fail "unknown flag: exit $rc, expected 2"

"$train" "$recipe" optim.lrr=1 > out.txt 2>&1; rc=$?
[[ $rc -eq 1 ]] || fail "misspelled key: exit $rc, expected 1"
[[ $(wc -l < out.txt) -eq 1 ]] || { cat out.txt; fail "misspelled key: not one line"; }
grep -q "unknown key 'optim.lrr' (did you mean 'optim.lr'?)" out.txt || { cat out.txt; fail "misspelled key message"; }

"$train" "$recipe" optim.zero_stage=2 > out.txt 2>&1; rc=$?
[[ $rc -eq 1 && $(wc -l < out.txt) -eq 1 ]] || { cat out.txt; fail "optim.zero_stage=2: exit $rc, expected 1 and one line"; }
grep -q "optim.zero_stage = 2 is out of range \[0, 1\]" out.txt || { cat out.txt; fail "optim.zero_stage=2 message"; }

"$train" "$src/recipes/pythia160m_int4.yaml" > out.txt 2>&1; rc=$?
[[ $rc -eq 1 ]] || fail "pythia recipe without a checkpoint: exit $rc, expected 1"
grep -q "train.init_from: checkpoints/pythia-160m-step100000 is not a Hugging Face model directory" out.txt ||
  { cat out.txt; fail "pythia recipe: message does not say what is missing"; }
grep -q "huggingface-cli download EleutherAI/pythia-160m" out.txt || fail "pythia recipe: no download hint"
[[ ! -e runs ]] || fail "pythia recipe created a run directory before stopping"

"$train" "$recipe" "${common[@]}" > run.log 2>&1 || { cat run.log; fail "the small corpus run failed"; }
run="$work/runs/small"
for f in metrics.jsonl report.html recipe.resolved.yaml tokenizer.json \
         checkpoints/step-00000004/model.safetensors checkpoints/step-00000008/optimizer.safetensors \
         checkpoints/step-00000008/config.json checkpoints/step-00000008/trainer_state.json; do
  [[ -s "$run/$f" ]] || fail "missing $run/$f"
done
grep -q "^step 8/8 | loss" run.log || { cat run.log; fail "no progress line for step 8"; }
grep -q "<svg" "$run/report.html" || fail "report.html has no plot"

"$train" "$recipe" "${common[@]}" --resume train.steps=10 > resume.log 2>&1 || { cat resume.log; fail "--resume failed"; }
grep -q "resuming .*step-00000008 at step 8" resume.log || { cat resume.log; fail "--resume did not start at step 8"; }
[[ -s "$run/checkpoints/step-00000010/model.safetensors" ]] || fail "no checkpoint at step 10 after --resume"
[[ ! -e "$work/runs/small-2" ]] || fail "--resume made a new run directory"

"$train" "$recipe" "${common[@]}" run.name=qat quant.scheme=q4_0 train.steps=4 > qat.log 2>&1 ||
  { cat qat.log; fail "the QAT run failed"; }
ckpt="$work/runs/qat/checkpoints/step-00000004"
[[ -s "$ckpt/tokenizer.json" ]] || fail "the checkpoint has no tokenizer.json"
"$export_bin" "$ckpt" "$work/qat.q8.gguf" --type q8_0 > exp.txt 2>&1; rc=$?
[[ $rc -eq 1 ]] || { cat exp.txt; fail "exporting a q4_0-QAT model to q8_0: exit $rc, expected a refusal (1)"; }
grep -q "QAT only pays off when deployment uses the same scheme" exp.txt || { cat exp.txt; fail "refusal does not say why"; }
[[ ! -e "$work/qat.q8.gguf" ]] || fail "a refused export left a file"
"$export_bin" "$ckpt" "$work/qat.q4.gguf" --type q4_0 > exp.txt 2>&1 || { cat exp.txt; fail "q4_0 export of a q4_0-QAT model failed"; }
[[ -s "$work/qat.q4.gguf" ]] || fail "no GGUF written"

# The integer path scores the same text as the fake-quant evaluation of the
# same weights (packed 4-bit weights are bit-identical; only the matmul's
# summation order differs).
eval_bin="$(dirname "$train")/gridlock_eval"
printf 'In the beginning God created the heaven and the earth. And the earth was without form, and void.\n%.0s' {1..8} > text.txt
"$eval_bin" "$ckpt" text.txt --fake-quant int4_probe:g32 --json > fake.json 2>&1 || { cat fake.json; fail "eval --fake-quant"; }
"$eval_bin" "$ckpt" text.txt --packed int4_probe:g32 --json > packed.json 2>&1 || { cat packed.json; fail "eval --packed"; }
"$eval_bin" "$ckpt" text.txt --json > fp.json 2>&1 || { cat fp.json; fail "eval"; }
python3 - fake.json packed.json fp.json <<'PY' || fail "packed and fake-quant perplexities differ"
import json, sys
f, p, fp = (json.load(open(x))["ppl"] for x in sys.argv[1:4])
assert abs(p - f) <= 1e-5 * f, (f, p)
assert abs(f - fp) > 1e-5 * fp, ("quantization changed nothing", f, fp)
print("fake-quant ppl", f, "packed ppl", p, "fp ppl", fp)
PY
echo "PASS"
