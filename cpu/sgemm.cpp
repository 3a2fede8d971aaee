#include "cpu/sgemm.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>

// The file is compiled for the baseline ISA; only these functions use
// AVX-512, and sgemm_available() checks the CPU before anything calls them.
#define GL_AVX512 __attribute__((target("avx512f,avx512dq,fma")))

namespace gl::cpu {
namespace {

// Register block: 12 rows x 32 columns of C = 24 zmm accumulators, plus two
// for the B row and one for the broadcast A element (27 of 32 registers).
constexpr int MR = 12, NR = 32;
// Cache blocks (Zen 4 / Skylake-X: 32-48 KB L1d, 1-2 MB L2 per core): a
// packed A micro-panel (MR x KC, 12 KB) stays in L1 while the packed B block
// (KC x NC, 512 KB) streams from L2; MC rows of A are packed at a time.
constexpr int64_t KC = 256, NC = 512, MC = 120;
// When the B block is the outer loop, every NC columns repack the same A
// rows; for a short, wide product (the vocabulary head: M = 512 tokens,
// N = 50304) that is 49 copies of A per thread, 5% of a Pythia-160m
// forward in memcpy. The other order packs up to MC_WIDE rows of A once
// per depth block and runs every B block past them (B then is repacked
// once per MC_WIDE rows). run() takes whichever order packs less.
constexpr int64_t MC_WIDE = 43 * MR;  // 516 rows: a 512-token batch in one block

// Packed A comes in two layouts so that packing is a plain copy whichever
// way A is stored: row-major (element (r, k) at r * KC + k) when A's rows
// are contiguous, as for activations; k-major (k * MR + r) when its columns
// are, as for a transposed operand. The kernel is compiled for both.
enum class ALayout { RowMajor, KMajor };

template <ALayout L>
constexpr int64_t a_k_step() { return L == ALayout::RowMajor ? 1 : MR; }
template <ALayout L>
constexpr int64_t a_r_step() { return L == ALayout::RowMajor ? KC : 1; }

struct Buffers {
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> a, b;
  Buffers() {
    a.reset(static_cast<float*>(std::aligned_alloc(64, sizeof(float) * MC_WIDE * KC)));
    b.reset(static_cast<float*>(std::aligned_alloc(64, sizeof(float) * KC * NC)));
    if (!a || !b) std::abort();
  }
};

Buffers& buffers() {
  static thread_local Buffers buf;
  return buf;
}

// Packs rows [i0, i0 + mc) and depths [k0, k0 + kc) of A into MR-row
// micro-panels, zero-padding the last one to MR rows.
template <ALayout L>
void pack_a(float* dst, const SgemmArgs& g, int64_t i0, int64_t mc, int64_t k0, int64_t kc) {
  const int64_t full = L == ALayout::KMajor && g.a_row == 1 ? mc / MR * MR : 0;
  if (full > 0) {
    // k-major from contiguous columns of A (a transposed operand, as dY^T
    // in a weight gradient): walk A's rows once, 12 floats per micro-panel.
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

// Transposes the 16 x 16 block rows[i][j] in registers: out[j][i].
GL_AVX512 inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int p = 0; p < 8; ++p) {
    t[2 * p] = _mm512_unpacklo_ps(r[2 * p], r[2 * p + 1]);
    t[2 * p + 1] = _mm512_unpackhi_ps(r[2 * p], r[2 * p + 1]);
  }
  // u[4q + m], 128-bit lane l: column 4l + m of rows 4q .. 4q + 3.
  __m512 u[16];
  for (int q = 0; q < 4; ++q) {
    const __m512d a = _mm512_castps_pd(t[4 * q]), b = _mm512_castps_pd(t[4 * q + 2]);
    const __m512d c = _mm512_castps_pd(t[4 * q + 1]), d = _mm512_castps_pd(t[4 * q + 3]);
    u[4 * q + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
    u[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    u[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
    u[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
  }
  // Column 4l + m gathers lane l of u[m], u[4 + m], u[8 + m], u[12 + m].
  for (int m = 0; m < 4; ++m) {
    const __m512 v0 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0x44);
    const __m512 v1 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0xEE);
    const __m512 w0 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0x44);
    const __m512 w1 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0xEE);
    r[m] = _mm512_shuffle_f32x4(v0, w0, 0x88);
    r[4 + m] = _mm512_shuffle_f32x4(v0, w0, 0xDD);
    r[8 + m] = _mm512_shuffle_f32x4(v1, w1, 0x88);
    r[12 + m] = _mm512_shuffle_f32x4(v1, w1, 0xDD);
  }
}

// Packs depths [k0, k0 + kc) and columns [j0, j0 + nc) of B into NR-column
// micro-panels (element (k, c) at k * NR + c), zero-padding the last one.
GL_AVX512 void pack_b(float* dst, const SgemmArgs& g, int64_t k0, int64_t kc, int64_t j0,
                      int64_t nc) {
  for (int64_t p = 0; p < nc; p += NR) {
    float* panel = dst + p * kc;
    const int64_t cols = std::min<int64_t>(NR, nc - p);
    const float* src = g.b + k0 * g.b_row + (j0 + p) * g.b_col;
    if (g.b_col == 1 && cols == NR) {  // rows of B are contiguous: copy
      for (int64_t k = 0; k < kc; ++k) {
        _mm512_store_ps(panel + k * NR, _mm512_loadu_ps(src + k * g.b_row));
        _mm512_store_ps(panel + k * NR + 16, _mm512_loadu_ps(src + k * g.b_row + 16));
      }
      continue;
    }
    int64_t k = 0;
    if (g.b_row == 1 && cols == NR) {  // B transposed (a weight [N, K]): 16 x 16 blocks
      for (; k + 16 <= kc; k += 16) {
        for (int h = 0; h < 2; ++h) {
          __m512 r[16];
          for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + (h * 16 + i) * g.b_col + k);
          transpose16(r);
          for (int t = 0; t < 16; ++t) _mm512_store_ps(panel + (k + t) * NR + h * 16, r[t]);
        }
      }
    }
    for (; k < kc; ++k)
      for (int64_t c = 0; c < NR; ++c)
        panel[k * NR + c] = c < cols ? src[k * g.b_row + c * g.b_col] : 0.f;
  }
}

// C[0:MR, 0:NR] (+)= A-panel . B-panel over kc depths. `add` keeps what C
// holds; otherwise C is overwritten. c may be a scratch tile (ldc NR).
template <ALayout L>
GL_AVX512 void kernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool add) {
  __m512 acc[MR][2];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      const __m512 av = _mm512_set1_ps(a[r * a_r_step<L>()]);
      acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
    }
    a += a_k_step<L>();
    b += NR;
  }
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) {
    float* row = c + r * ldc;
    if (add) {
      acc[r][0] = _mm512_add_ps(acc[r][0], _mm512_loadu_ps(row));
      acc[r][1] = _mm512_add_ps(acc[r][1], _mm512_loadu_ps(row + 16));
    }
    _mm512_storeu_ps(row, acc[r][0]);
    _mm512_storeu_ps(row + 16, acc[r][1]);
  }
}

// Relative cost of packing one element: a transposed B (a weight in
// x . W^T) takes a 16 x 16 register transpose per block, about four times a
// plain copy; a k-major A is gathered element by element.
double pack_cost_b(const SgemmArgs& g) { return g.b_col == 1 ? 0.25 : 1.0; }
double pack_cost_a(const SgemmArgs& g) { return g.a_col == 1 ? 0.25 : 1.0; }

// Packing work (per depth) of a share of mt rows and nt columns in the
// B-outer order (B once, A once per NC columns) and the A-outer order (A
// once, B once per MC_WIDE rows).
double packing_b_outer(const SgemmArgs& g, double mt, double nt) {
  return nt * pack_cost_b(g) + mt * std::ceil(nt / double(NC)) * pack_cost_a(g);
}
double packing_a_outer(const SgemmArgs& g, double mt, double nt) {
  return mt * pack_cost_a(g) + nt * std::ceil(mt / double(MC_WIDE)) * pack_cost_b(g);
}

// C[i0:i0+mc, j0:j0+nc] (+)= packed A block . packed B block.
template <ALayout L>
GL_AVX512 void block(const SgemmArgs& g, const float* pa, const float* pb, int64_t i0, int64_t mc,
                     int64_t j0, int64_t nc, int64_t kc, bool add) {
  alignas(64) float tile[MR * NR];
  for (int64_t ip = 0; ip < mc; ip += MR) {
    const float* ap = pa + ip * KC;
    const int64_t rows = std::min<int64_t>(MR, mc - ip);
    for (int64_t jp = 0; jp < nc; jp += NR) {
      const float* bp = pb + jp * kc;
      const int64_t cols = std::min<int64_t>(NR, nc - jp);
      float* c = g.c + (i0 + ip) * g.ldc + j0 + jp;
      if (rows == MR && cols == NR) {
        kernel<L>(kc, ap, bp, c, g.ldc, add);
        continue;
      }
      // Edge tile: the same arithmetic into scratch, then the valid part.
      kernel<L>(kc, ap, bp, tile, NR, false);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < cols; ++j)
          c[r * g.ldc + j] = add ? c[r * g.ldc + j] + tile[r * NR + j] : tile[r * NR + j];
    }
  }
}

// One thread's share: rows [m0, m1) and columns [n0, n1) of C. Either loop
// order computes every tile with the same kernel calls over the same depth
// blocks, so C does not depend on the order chosen.
template <ALayout L>
GL_AVX512 void run(const SgemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  Buffers& buf = buffers();
  const bool a_outer = packing_a_outer(g, double(m1 - m0), double(n1 - n0)) <
                       packing_b_outer(g, double(m1 - m0), double(n1 - n0));
  for (int64_t k0 = 0; k0 < g.K; k0 += KC) {
    const int64_t kc = std::min(KC, g.K - k0);
    const bool add = k0 > 0 || g.accumulate;
    if (a_outer) {
      for (int64_t i0 = m0; i0 < m1; i0 += MC_WIDE) {
        const int64_t mc = std::min(MC_WIDE, m1 - i0);
        pack_a<L>(buf.a.get(), g, i0, mc, k0, kc);
        for (int64_t j0 = n0; j0 < n1; j0 += NC) {
          const int64_t nc = std::min(NC, n1 - j0);
          pack_b(buf.b.get(), g, k0, kc, j0, nc);
          block<L>(g, buf.a.get(), buf.b.get(), i0, mc, j0, nc, kc, add);
        }
      }
      continue;
    }
    for (int64_t j0 = n0; j0 < n1; j0 += NC) {
      const int64_t nc = std::min(NC, n1 - j0);
      pack_b(buf.b.get(), g, k0, kc, j0, nc);
      for (int64_t i0 = m0; i0 < m1; i0 += MC) {
        const int64_t mc = std::min(MC, m1 - i0);
        pack_a<L>(buf.a.get(), g, i0, mc, k0, kc);
        block<L>(g, buf.a.get(), buf.b.get(), i0, mc, j0, nc, kc, add);
      }
    }
  }
}

void run_share(const SgemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  if (g.a_col == 1) run<ALayout::RowMajor>(g, m0, m1, n0, n1);
  else run<ALayout::KMajor>(g, m0, m1, n0, n1);
}

bool cpu_has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
}

}  // namespace

bool sgemm_available() {
  static const bool ok = [] {
    const char* env = std::getenv("GRIDLOCK_GEMM");
    if (env && std::strcmp(env, "eigen") == 0) return false;
    return cpu_has_avx512();
  }();
  return ok;
}

void sgemm(const SgemmArgs& g) {
  if (g.M <= 0 || g.N <= 0) return;
  if (g.K <= 0) {
    if (!g.accumulate)
      for (int64_t i = 0; i < g.M; ++i) std::fill(g.c + i * g.ldc, g.c + i * g.ldc + g.N, 0.f);
    return;
  }
  const int64_t pm = (g.M + MR - 1) / MR, pn = (g.N + NR - 1) / NR;
  // Below about a million multiply-adds a parallel region costs more than it saves.
  int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (g.M * g.N * g.K < (int64_t(1) << 20)) nt = 1;
  nt = int(std::min<int64_t>(nt, pm * pn));
  if (nt <= 1) {
    run_share(g, 0, g.M, 0, g.N);
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
    const double kernel = mt * ntc / 16.0;  // multiply-adds per cycle, one zmm FMA
    const double packing = std::min(packing_b_outer(g, mt, ntc), packing_a_outer(g, mt, ntc));
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
    if (m0 < m1 && n0 < n1) run_share(g, m0, m1, n0, n1);
  }
}

}  // namespace gl::cpu
