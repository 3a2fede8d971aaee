#!/usr/bin/env bash
# Set-up shared by ./train and ./test: make sure the Debian packages are
# there, configure the build tree once, then build incrementally.
#
#   scripts/setup.sh [--build-dir DIR] [--target TARGET]... [--with-python] [--with-fuzz] [-DVAR=VALUE ...]
#
# DIR defaults to build/ at the repository root; -D options are passed to the
# first cmake configure only (an existing tree keeps its cache: delete DIR to
# reconfigure). Quiet on success; on failure prints the tail of the log
# (DIR/configure.log or DIR/build.log) and exits non-zero.
#
# Packages: missing ones are installed with apt-get when running as root;
# otherwise the one `sudo apt-get install -y ...` line needed is printed and
# the script exits 1. ccache is optional: it is installed along with the
# others, but its absence alone never stops a non-root build.
# The CUDA toolkit is not a Debian package here: CMakeLists.txt finds nvcc on
# PATH or at /usr/local/cuda/bin/nvcc and builds the CUDA backend when it can.
set -euo pipefail

root_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="$root_dir/build"
targets=()
with_python=0
with_fuzz=0
cmake_defs=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) build_dir="$2"; shift 2 ;;
    --target) targets+=("$2"); shift 2 ;;  # repeatable
    --with-python) with_python=1; shift ;;
    --with-fuzz) with_fuzz=1; shift ;;
    -D*) cmake_defs+=("$1"); shift ;;
    *) echo "setup.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[[ "$build_dir" = /* ]] || build_dir="$root_dir/$build_dir"

required=(cmake ninja-build g++ make pkg-config libeigen3-dev libyaml-cpp-dev doctest-dev
          bible-kjv bible-kjv-text openmpi-bin libopenmpi-dev)
# bible-kjv(-text): the English training corpus (data/corpus.h; public domain);
# the `bible` program decompresses its text. OpenMPI: data-parallel training
# (dist/comm.h, mpirun -np N ./train ...).
optional=(ccache)
# The Python oracles of tests/reference/ (./test only): Debian's torch, and
# venv/pip for the pinned Hugging Face packages (scripts/python_env.sh);
# mpmath for tools/fit_gelu_poly.py's check.
if [[ $with_python -eq 1 ]]; then
  required+=(python3-torch python3-numpy python3-venv python3-pip python3-mpmath)
fi
# The libFuzzer stage of ./test (fuzz/): clang with its fuzzer and sanitizer
# runtimes, and clang's OpenMP.
if [[ $with_fuzz -eq 1 ]]; then
  required+=(clang libclang-rt-14-dev libomp-14-dev)
fi

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

# --- 1. Debian packages -------------------------------------------------------
if command -v dpkg-query >/dev/null 2>&1; then
  missing_required=() missing_optional=()
  for p in "${required[@]}"; do installed "$p" || missing_required+=("$p"); done
  for p in "${optional[@]}"; do installed "$p" || missing_optional+=("$p"); done
  missing=("${missing_required[@]}" "${missing_optional[@]}")
  if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ "$(id -u)" -eq 0 ]]; then
      mkdir -p "$build_dir"
      apt_log="$build_dir/apt.log"
      if ! { DEBIAN_FRONTEND=noninteractive apt-get update &&
             DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
               "${missing[@]}"; } >"$apt_log" 2>&1 &&
         [[ ${#missing_required[@]} -gt 0 ]]; then
        # (a failure to get only the optional ccache is not worth stopping for)
        tail -n 30 "$apt_log" >&2
        echo "setup.sh: apt-get install ${missing[*]} failed (log: $apt_log)" >&2
        exit 1
      fi
    elif [[ ${#missing_required[@]} -gt 0 ]]; then
      # The one line a person needs; everything else would be noise.
      echo "sudo apt-get install -y ${missing[*]}" >&2
      exit 1
    fi
  fi
fi

# --- 2. configure (once) -------------------------------------------------------
mkdir -p "$build_dir"
fail() {  # fail LOG WHAT
  tail -n 40 "$1" >&2
  echo "setup.sh: $2 failed (full log: $1)" >&2
  exit 1
}

# build.ninja is checked too: a configure that stopped half-way leaves a
# CMakeCache.txt behind but nothing to build with.
if [[ ! -f "$build_dir/CMakeCache.txt" || ! -f "$build_dir/build.ninja" ]]; then
  args=(-S "$root_dir" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release)
  if command -v ccache >/dev/null 2>&1; then
    args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
  fi
  cmake "${args[@]}" "${cmake_defs[@]}" >"$build_dir/configure.log" 2>&1 ||
    fail "$build_dir/configure.log" "cmake configure of $build_dir"
fi

# --- 3. build (incremental) ----------------------------------------------------
jobs="$(nproc 2>/dev/null || echo 2)"
build_args=(--build "$build_dir" -j "$jobs")
[[ ${#targets[@]} -gt 0 ]] && build_args+=(--target "${targets[@]}")
cmake "${build_args[@]}" >"$build_dir/build.log" 2>&1 ||
  fail "$build_dir/build.log" "build of $build_dir${targets[*]:+ (targets ${targets[*]})}"
