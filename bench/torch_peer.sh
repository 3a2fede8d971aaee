# Sourced by the CPU benchmark scripts: runs the PyTorch peer at its best
# on this machine, settings applied to that command only:
#   torch_peer SCRIPT.py ARGS...
# Debian's python3-torch under /usr/bin/python3 with OpenBLAS
# (libopenblas0-pthread; without it torch falls back to the reference BLAS,
# about 30x slower), OMP_WAIT_POLICY=PASSIVE and tcmalloc preloaded. On a CPU
# with AVX-512, OPENBLAS_CORETYPE=SkylakeX: Debian's OpenBLAS otherwise picks
# SSE3 kernels on the Xeons we measure on. Without AVX-512 (AMD Zen 3) that
# setting would run AVX-512 code the CPU lacks (the process dies on an
# illegal instruction), and OpenBLAS's own detection picks its AVX2
# (Haswell) kernels, the fastest it has there, so it is left alone.
tcmalloc=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
for pkg in libtcmalloc-minimal4 libopenblas0-pthread python3-torch; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
    { echo "$(basename "$0"): apt-get install -y $pkg" >&2; exit 1; }
done
torch_coretype=""
grep -qw avx512f /proc/cpuinfo && torch_coretype=SkylakeX

torch_peer() {
  if [[ -n "$torch_coretype" ]]; then
    OPENBLAS_CORETYPE="$torch_coretype" OMP_WAIT_POLICY=PASSIVE LD_PRELOAD="$tcmalloc" \
      /usr/bin/python3 "$@"
  else
    OMP_WAIT_POLICY=PASSIVE LD_PRELOAD="$tcmalloc" /usr/bin/python3 "$@"
  fi
}
