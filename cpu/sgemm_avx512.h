// The AVX-512 micro-kernel of cpu/sgemm.cpp (see cpu/sgemm_detail.h).
#pragma once
#include <immintrin.h>

#include "cpu/sgemm_detail.h"

#define GL_AVX512 __attribute__((target("avx512f,avx512dq,fma")))

namespace gl::cpu::sgemm_detail {

struct Avx512 {
  // 12 rows x 32 columns of C = 24 zmm accumulators, plus two for the B row
  // and one for the broadcast A element (27 of 32 registers).
  static constexpr int MR = 12, NR = 32;
  // Zen 4 / Skylake-X (1-2 MB L2 per core): the packed B block (KC x NC,
  // 512 KB) streams from L2 past an A micro-panel held in L1.
  static constexpr int64_t NC = 512, MC = 120;
  // A 512-token batch in one block when A is the outer loop.
  static constexpr int64_t MC_WIDE = 43 * MR;

  template <ALayout L>
  GL_AVX512 static void kernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                               bool add) {
    __m512 acc[MR][2];
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; ++k) {
      const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 12
      for (int r = 0; r < MR; ++r) {
        const __m512 av = _mm512_set1_ps(a[r * a_r_step<MR, L>()]);
        acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
      }
      a += a_k_step<MR, L>();
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

  // Transposes the 16 x 16 block rows[i][j] in registers: out[j][i].
  GL_AVX512 static void transpose16(__m512 r[16]) {
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

  // A full panel (element (k, c) at k * NR + c) from rows of B that are
  // contiguous (a copy) or from a transposed B, a weight [N, K] (16 x 16
  // register transposes).
  GL_AVX512 static int64_t pack_b_fast(float* panel, const float* src, int64_t b_row,
                                       int64_t b_col, int64_t kc) {
    if (b_col == 1) {
      for (int64_t k = 0; k < kc; ++k) {
        _mm512_store_ps(panel + k * NR, _mm512_loadu_ps(src + k * b_row));
        _mm512_store_ps(panel + k * NR + 16, _mm512_loadu_ps(src + k * b_row + 16));
      }
      return kc;
    }
    if (b_row != 1) return 0;
    int64_t k = 0;
    for (; k + 16 <= kc; k += 16) {
      for (int h = 0; h < 2; ++h) {
        __m512 r[16];
        for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + (h * 16 + i) * b_col + k);
        transpose16(r);
        for (int t = 0; t < 16; ++t) _mm512_store_ps(panel + (k + t) * NR + h * 16, r[t]);
      }
    }
    return k;
  }
};

}  // namespace gl::cpu::sgemm_detail
