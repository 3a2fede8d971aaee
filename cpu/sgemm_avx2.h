// The AVX2 + FMA micro-kernel of cpu/sgemm.cpp (see cpu/sgemm_detail.h),
// for CPUs without AVX-512 (AMD Zen 2/3, Intel before Skylake-X).
#pragma once
#include <immintrin.h>

#include "cpu/sgemm_detail.h"

#define GL_AVX2 __attribute__((target("avx2,fma")))

namespace gl::cpu::sgemm_detail {

struct Avx2 {
  // 6 rows x 16 columns of C = 12 ymm accumulators, plus two for the B row
  // and one for the broadcast A element (15 of 16 registers): 12 FMAs per
  // 8 loads, enough to keep both FMA pipes of a Zen core busy.
  static constexpr int MR = 6, NR = 16;
  // Zen 2/3 (512 KB L2 per core): the packed B block (KC x NC, 256 KB)
  // stays in L2 with room for the A panels streaming through.
  static constexpr int64_t NC = 256, MC = 120;
  // A 512-token batch in one block when A is the outer loop.
  static constexpr int64_t MC_WIDE = 86 * MR;

  template <ALayout L>
  GL_AVX2 static void kernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                             bool add) {
    __m256 acc[MR][2];
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; ++k) {
      const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
      for (int r = 0; r < MR; ++r) {
        const __m256 av = _mm256_broadcast_ss(a + r * a_r_step<MR, L>());
        acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
      }
      a += a_k_step<MR, L>();
      b += NR;
    }
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      float* row = c + r * ldc;
      if (add) {
        acc[r][0] = _mm256_add_ps(acc[r][0], _mm256_loadu_ps(row));
        acc[r][1] = _mm256_add_ps(acc[r][1], _mm256_loadu_ps(row + 8));
      }
      _mm256_storeu_ps(row, acc[r][0]);
      _mm256_storeu_ps(row + 8, acc[r][1]);
    }
  }

  // Transposes the 8 x 8 block rows[i][j] in registers: out[j][i].
  GL_AVX2 static void transpose8(__m256 r[8]) {
    __m256 t[8], s[8];
    for (int p = 0; p < 4; ++p) {
      t[2 * p] = _mm256_unpacklo_ps(r[2 * p], r[2 * p + 1]);
      t[2 * p + 1] = _mm256_unpackhi_ps(r[2 * p], r[2 * p + 1]);
    }
    // s[4h + m], 128-bit lane l: column 4l + m of rows 4h .. 4h + 3.
    for (int h = 0; h < 2; ++h) {
      s[4 * h + 0] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
      s[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xEE);
      s[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
      s[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xEE);
    }
    for (int m = 0; m < 4; ++m) {
      r[m] = _mm256_permute2f128_ps(s[m], s[4 + m], 0x20);
      r[4 + m] = _mm256_permute2f128_ps(s[m], s[4 + m], 0x31);
    }
  }

  // A full panel (element (k, c) at k * NR + c) from rows of B that are
  // contiguous (a copy) or from a transposed B, a weight [N, K] (8 x 8
  // register transposes).
  GL_AVX2 static int64_t pack_b_fast(float* panel, const float* src, int64_t b_row, int64_t b_col,
                                     int64_t kc) {
    if (b_col == 1) {
      for (int64_t k = 0; k < kc; ++k) {
        _mm256_store_ps(panel + k * NR, _mm256_loadu_ps(src + k * b_row));
        _mm256_store_ps(panel + k * NR + 8, _mm256_loadu_ps(src + k * b_row + 8));
      }
      return kc;
    }
    if (b_row != 1) return 0;
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
      for (int h = 0; h < 2; ++h) {
        __m256 r[8];
        for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + (h * 8 + i) * b_col + k);
        transpose8(r);
        for (int t = 0; t < 8; ++t) _mm256_store_ps(panel + (k + t) * NR + h * 8, r[t]);
      }
    }
    return k;
  }
};

}  // namespace gl::cpu::sgemm_detail
