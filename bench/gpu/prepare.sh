#!/usr/bin/env bash
# Builds, on a CPU machine, everything a lent GPU machine runs, into one
# folder small enough to carry (the device tool carries 64 MiB; the GPU
# machine has no package mirror and cannot build): the binaries (portable
# x86-64, sm_90, no MPI), libyaml-cpp.so.0.7, and the corpus cache of
# tests/trainer/e2e/small.yaml for the CPU-vs-CUDA training test.
#
#   bench/gpu/prepare.sh [CARRY_DIR]      (default gpu-carry; git-ignored)
#
# Then, with the device tool: carry CARRY_DIR and run bench/gpu/session.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
carry="${1:-gpu-carry}"
build=build-gpu-portable
mkdir -p "$build"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGRIDLOCK_NATIVE=OFF -DGRIDLOCK_MPI=OFF \
  -DGRIDLOCK_CUDA=ON >"$build/configure.out" 2>&1 || { tail -20 "$build/configure.out"; exit 1; }
cmake --build "$build" --target gridlock_train gridlock_probe test_cuda gridlock_bench_train
rm -rf "$carry" && mkdir -p "$carry"/{apps,tests,bench,lib}
cp "$build/apps/gridlock_train" "$build/apps/gridlock_probe" "$carry/apps/"
cp "$build/tests/test_cuda" "$carry/tests/"
cp "$build/bench/gridlock_bench_train" "$carry/bench/"
cp "$(ldconfig -p | awk '/libyaml-cpp\.so\.0\.7 / {print $NF; exit}')" "$carry/lib/"
# The corpus cache small.yaml builds (tokenizer + shards), made by a 1-step run.
"$carry/apps/gridlock_train" tests/trainer/e2e/small.yaml run.out_dir="$build/prep_runs" \
  data.cache_dir="$carry/cache" train.steps=3 train.save_every=3 run.name=prep >/dev/null
rm -rf "$build/prep_runs"
echo "$(git rev-parse HEAD) $(date -u +%FT%TZ)" >"$carry/BUILT_FROM"
du -sh "$carry"
