// The SGEMM driver: cache blocking, packing, the loop order and the split
// over threads, written once for every micro-kernel (cpu/sgemm_detail.h
// says what a kernel provides; cpu/sgemm_avx512.h and cpu/sgemm_avx2.h are
// the two we have). The file is compiled for the baseline ISA; only the
// kernels' own functions use AVX2 or AVX-512, and the CPU is checked before
// anything calls them.
#include "cpu/sgemm.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "core/error.h"
#include "cpu/sgemm_avx2.h"
#include "cpu/sgemm_avx512.h"

namespace gl::cpu {
namespace {

using namespace sgemm_detail;

template <class Isa>
struct Buffers {
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> a, b;
  Buffers() {
    a.reset(static_cast<float*>(std::aligned_alloc(64, sizeof(float) * Isa::MC_WIDE * KC)));
    b.reset(static_cast<float*>(std::aligned_alloc(64, sizeof(float) * KC * Isa::NC)));
    if (!a || !b) std::abort();
  }
};

template <class Isa>
Buffers<Isa>& buffers() {
  static thread_local Buffers<Isa> buf;
  return buf;
}

// Packs rows [i0, i0 + mc) and depths [k0, k0 + kc) of A into MR-row
// micro-panels, zero-padding the last one to MR rows.
template <class Isa, ALayout L>
void pack_a(float* dst, const SgemmArgs& g, int64_t i0, int64_t mc, int64_t k0, int64_t kc) {
  constexpr int MR = Isa::MR;
  const int64_t full = L == ALayout::KMajor && g.a_row == 1 ? mc / MR * MR : 0;
  if (full > 0) {
    // k-major from contiguous columns of A (a transposed operand, as dY^T
    // in a weight gradient): walk A's rows once, MR floats per micro-panel.
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = g.a + (k0 + k) * g.a_col + i0;
      for (int64_t p = 0; p < full; p += MR)
        std::memcpy(dst + p * KC + k * MR, src + p, sizeof(float) * MR);
    }
  }
  for (int64_t p = full; p < mc; p += MR) {
    float* panel = dst + p * KC;  // MR * KC floats per micro-panel in both layouts
    const int64_t rows = std::min<int64_t>(MR, mc - p);
    const float* src = g.a + (i0 + p) * g.a_row + k0 * g.a_col;
    if (L == ALayout::RowMajor) {  // rows of A contiguous (a_col == 1)
      for (int64_t r = 0; r < MR; ++r) {
        if (r < rows) std::memcpy(panel + r * KC, src + r * g.a_row, sizeof(float) * kc);
        else std::memset(panel + r * KC, 0, sizeof(float) * kc);
      }
    } else {
      for (int64_t k = 0; k < kc; ++k)
        for (int64_t r = 0; r < MR; ++r)
          panel[k * MR + r] = r < rows ? src[k * g.a_col + r * g.a_row] : 0.f;
    }
  }
}

// Packs depths [k0, k0 + kc) and columns [j0, j0 + nc) of B into NR-column
// micro-panels (element (k, c) at k * NR + c), zero-padding the last one.
template <class Isa>
void pack_b(float* dst, const SgemmArgs& g, int64_t k0, int64_t kc, int64_t j0, int64_t nc) {
  constexpr int NR = Isa::NR;
  for (int64_t p = 0; p < nc; p += NR) {
    float* panel = dst + p * kc;
    const int64_t cols = std::min<int64_t>(NR, nc - p);
    const float* src = g.b + k0 * g.b_row + (j0 + p) * g.b_col;
    int64_t k = cols == NR ? Isa::pack_b_fast(panel, src, g.b_row, g.b_col, kc) : 0;
    for (; k < kc; ++k)
      for (int64_t c = 0; c < NR; ++c)
        panel[k * NR + c] = c < cols ? src[k * g.b_row + c * g.b_col] : 0.f;
  }
}

// Relative cost of packing one element: a transposed B (a weight in
// x . W^T) takes a register transpose per block, about four times a plain
// copy; a k-major A is gathered element by element.
double pack_cost_b(const SgemmArgs& g) { return g.b_col == 1 ? 0.25 : 1.0; }
double pack_cost_a(const SgemmArgs& g) { return g.a_col == 1 ? 0.25 : 1.0; }

// Packing work (per depth) of a share of mt rows and nt columns in the
// B-outer order (B once, A once per NC columns) and the A-outer order (A
// once, B once per MC_WIDE rows).
template <class Isa>
double packing_b_outer(const SgemmArgs& g, double mt, double nt) {
  return nt * pack_cost_b(g) + mt * std::ceil(nt / double(Isa::NC)) * pack_cost_a(g);
}
template <class Isa>
double packing_a_outer(const SgemmArgs& g, double mt, double nt) {
  return mt * pack_cost_a(g) + nt * std::ceil(mt / double(Isa::MC_WIDE)) * pack_cost_b(g);
}

// C[i0:i0+mc, j0:j0+nc] (+)= packed A block . packed B block.
template <class Isa, ALayout L>
void block(const SgemmArgs& g, const float* pa, const float* pb, int64_t i0, int64_t mc,
           int64_t j0, int64_t nc, int64_t kc, bool add) {
  constexpr int MR = Isa::MR, NR = Isa::NR;
  alignas(64) float tile[MR * NR];
  for (int64_t ip = 0; ip < mc; ip += MR) {
    const float* ap = pa + ip * KC;
    const int64_t rows = std::min<int64_t>(MR, mc - ip);
    for (int64_t jp = 0; jp < nc; jp += NR) {
      const float* bp = pb + jp * kc;
      const int64_t cols = std::min<int64_t>(NR, nc - jp);
      float* c = g.c + (i0 + ip) * g.ldc + j0 + jp;
      if (rows == MR && cols == NR) {
        Isa::template kernel<L>(kc, ap, bp, c, g.ldc, add);
        continue;
      }
      // Edge tile: the same arithmetic into scratch, then the valid part.
      Isa::template kernel<L>(kc, ap, bp, tile, NR, false);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < cols; ++j)
          c[r * g.ldc + j] = add ? c[r * g.ldc + j] + tile[r * NR + j] : tile[r * NR + j];
    }
  }
}

// One thread's share: rows [m0, m1) and columns [n0, n1) of C. Either loop
// order computes every tile with the same kernel calls over the same depth
// blocks, so C does not depend on the order chosen.
template <class Isa, ALayout L>
void run(const SgemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  Buffers<Isa>& buf = buffers<Isa>();
  const bool a_outer = packing_a_outer<Isa>(g, double(m1 - m0), double(n1 - n0)) <
                       packing_b_outer<Isa>(g, double(m1 - m0), double(n1 - n0));
  for (int64_t k0 = 0; k0 < g.K; k0 += KC) {
    const int64_t kc = std::min(KC, g.K - k0);
    const bool add = k0 > 0 || g.accumulate;
    if (a_outer) {
      for (int64_t i0 = m0; i0 < m1; i0 += Isa::MC_WIDE) {
        const int64_t mc = std::min(Isa::MC_WIDE, m1 - i0);
        pack_a<Isa, L>(buf.a.get(), g, i0, mc, k0, kc);
        for (int64_t j0 = n0; j0 < n1; j0 += Isa::NC) {
          const int64_t nc = std::min(Isa::NC, n1 - j0);
          pack_b<Isa>(buf.b.get(), g, k0, kc, j0, nc);
          block<Isa, L>(g, buf.a.get(), buf.b.get(), i0, mc, j0, nc, kc, add);
        }
      }
      continue;
    }
    for (int64_t j0 = n0; j0 < n1; j0 += Isa::NC) {
      const int64_t nc = std::min(Isa::NC, n1 - j0);
      pack_b<Isa>(buf.b.get(), g, k0, kc, j0, nc);
      for (int64_t i0 = m0; i0 < m1; i0 += Isa::MC) {
        const int64_t mc = std::min(Isa::MC, m1 - i0);
        pack_a<Isa, L>(buf.a.get(), g, i0, mc, k0, kc);
        block<Isa, L>(g, buf.a.get(), buf.b.get(), i0, mc, j0, nc, kc, add);
      }
    }
  }
}

template <class Isa>
void run_share(const SgemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  if (g.a_col == 1) run<Isa, ALayout::RowMajor>(g, m0, m1, n0, n1);
  else run<Isa, ALayout::KMajor>(g, m0, m1, n0, n1);
}

template <class Isa>
void sgemm_with(const SgemmArgs& g) {
  constexpr int MR = Isa::MR, NR = Isa::NR;
  const int64_t pm = (g.M + MR - 1) / MR, pn = (g.N + NR - 1) / NR;
  // Below about a million multiply-adds a parallel region costs more than it saves.
  int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (g.M * g.N * g.K < (int64_t(1) << 20)) nt = 1;
  nt = int(std::min<int64_t>(nt, pm * pn));
  if (nt <= 1) {
    run_share<Isa>(g, 0, g.M, 0, g.N);
    return;
  }
  // A tm x tn grid of shares in whole micro-tiles. Each thread packs the B
  // columns and A rows of its own share (in the cheaper of run()'s two
  // orders), so the grid with the least work for its busiest thread counts
  // packing too.
  int tm = 1;
  double best = -1;
  for (int t = 1; t <= nt; ++t) {
    if (nt % t) continue;
    const double mt = double((pm + t - 1) / t * MR), ntc = double((pn + nt / t - 1) / (nt / t) * NR);
    const double kernel = mt * ntc / 16.0;  // multiply-adds per cycle: 2 x 8-wide or 1 x 16-wide FMA
    const double packing =
        std::min(packing_b_outer<Isa>(g, mt, ntc), packing_a_outer<Isa>(g, mt, ntc));
    const double cost = double(g.K) * (kernel + packing);
    if (best < 0 || cost < best) best = cost, tm = t;
  }
  const int tn = nt / tm;
#pragma omp parallel num_threads(nt)
  {
    const int id = omp_get_thread_num(), im = id / tn, in = id % tn;
    const int64_t rm0 = pm * im / tm, rm1 = pm * (im + 1) / tm;
    const int64_t cn0 = pn * in / tn, cn1 = pn * (in + 1) / tn;
    const int64_t m0 = rm0 * MR, m1 = std::min(g.M, rm1 * MR);
    const int64_t n0 = cn0 * NR, n1 = std::min(g.N, cn1 * NR);
    if (m0 < m1 && n0 < n1) run_share<Isa>(g, m0, m1, n0, n1);
  }
}

}  // namespace

const char* sgemm_isa_name(SgemmIsa isa) {
  switch (isa) {
    case SgemmIsa::Avx2: return "avx2";
    case SgemmIsa::Avx512: return "avx512";
    default: return "none";
  }
}

bool sgemm_cpu_supports(SgemmIsa isa) {
  static const bool avx2 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  static const bool avx512 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("fma");
  }();
  return isa == SgemmIsa::Avx2 ? avx2 : isa == SgemmIsa::Avx512 ? avx512 : false;
}

SgemmIsa sgemm_isa() {
  static const SgemmIsa isa = [] {
    const char* env = std::getenv("GRIDLOCK_GEMM");
    const std::string want = env ? env : "";
    GL_CHECK(want.empty() || want == "eigen" || want == "avx2" || want == "avx512",
             "GRIDLOCK_GEMM=", want, ": expected eigen, avx2 or avx512 (or unset: the best this CPU has)");
    if (want == "eigen") return SgemmIsa::None;
    if (want == "avx2" || want == "avx512") {
      const SgemmIsa asked = want == "avx2" ? SgemmIsa::Avx2 : SgemmIsa::Avx512;
      GL_CHECK(sgemm_cpu_supports(asked), "GRIDLOCK_GEMM=", want, ": this CPU does not support it");
      return asked;
    }
    if (sgemm_cpu_supports(SgemmIsa::Avx512)) return SgemmIsa::Avx512;
    if (sgemm_cpu_supports(SgemmIsa::Avx2)) return SgemmIsa::Avx2;
    return SgemmIsa::None;
  }();
  return isa;
}

bool sgemm_available() { return sgemm_isa() != SgemmIsa::None; }

void sgemm(const SgemmArgs& g) { sgemm(g, sgemm_isa()); }

void sgemm(const SgemmArgs& g, SgemmIsa isa) {
  GL_CHECK(sgemm_cpu_supports(isa), "sgemm: kernel ", sgemm_isa_name(isa),
           " is not supported by this CPU");
  if (g.M <= 0 || g.N <= 0) return;
  if (g.K <= 0) {
    if (!g.accumulate)
      for (int64_t i = 0; i < g.M; ++i) std::fill(g.c + i * g.ldc, g.c + i * g.ldc + g.N, 0.f);
    return;
  }
  if (isa == SgemmIsa::Avx512) sgemm_with<Avx512>(g);
  else sgemm_with<Avx2>(g);
}

}  // namespace gl::cpu
