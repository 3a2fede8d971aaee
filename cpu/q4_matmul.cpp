// 4-bit packed matrix product on the CPU (layout and decode rules in
// cpu/q4_matmul.h). OpenMP over the N output rows. f32 with groups that are
// multiples of 32 (every preset) takes the fast path: per 32-code block,
// decode into a 32-float stack block (zero-extend, convert, multiply: GCC
// vectorises it to AVX-512) and multiply-add it into 16-lane vector
// accumulators for a tile of up to 4 x rows held in registers; the weight
// streams from memory once at half a byte per value, 8x fewer bytes than
// f32. f64 inputs and groups that straddle blocks (16, 48, a per-channel K
// not a multiple of 32) decode a whole row into a buffer and take plain
// dot products: the reference path, used by the f64 tests.
#include "cpu/q4_matmul.h"

#include <omp.h>

#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "quant/ggml_blocks.h"  // GL_NO_FP_CONTRACT

// The decode must round the product and the sum of ASYM_MIN separately (as
// quant/quantizer.cpp's dequantize does): no contraction in this file. The
// dot products use std::fma explicitly, which GCC still vectorises.
GL_NO_FP_CONTRACT

namespace gl::cpu {

namespace {

template <Q4Decode D>
inline float decode_value(int u, float s, float z, int code_offset) {
  if constexpr (D == Q4Decode::SYMMETRIC) return float(u + code_offset) * s;
  else if constexpr (D == Q4Decode::ASYM_ZERO) return s * (float(u) - z);
  else return float(u) * s + z;
}

// w[0..K) = the decoded row. b: the row's packed bytes; s, z: its scales
// and zeros (z null for SYMMETRIC).
template <Q4Decode D>
void decode_row(float* __restrict w, const uint8_t* __restrict b, const float* __restrict s,
                const float* __restrict z, const Q4Layout& l) {
  const int64_t K = l.K, G = l.group;
  const int off = l.code_offset;
  if (G % Q4_BLOCK == 0) {
    // Every block lies inside one group (and K % 32 == 0): the hot path.
    for (int64_t g = 0; g < K / G; ++g) {
      const float sg = s[g], zg = z ? z[g] : 0.0f;
      for (int64_t k0 = g * G; k0 < (g + 1) * G; k0 += Q4_BLOCK) {
        const uint8_t* __restrict p = b + k0 / 2;
        float* __restrict o = w + k0;
        for (int j = 0; j < 16; ++j) {
          o[j] = decode_value<D>(p[j] & 15, sg, zg, off);
          o[j + 16] = decode_value<D>(p[j] >> 4, sg, zg, off);
        }
      }
    }
    return;
  }
  // Groups of 16, 48, ..., or one group per row with K not a multiple of
  // 32 (its last block is partly padding): element by element.
  for (int64_t k = 0; k < K; ++k) {
    const int64_t j = k % Q4_BLOCK;
    const uint8_t byte = b[(k - j) / 2 + j % 16];
    const int u = j < 16 ? byte & 15 : byte >> 4;
    const int64_t g = k / G;
    w[k] = decode_value<D>(u, s[g], z ? z[g] : 0.0f, off);
  }
}

void decode_row_any(float* w, const uint8_t* b, const float* s, const float* z,
                    const Q4Layout& l) {
  switch (l.decode) {
    case Q4Decode::SYMMETRIC: decode_row<Q4Decode::SYMMETRIC>(w, b, s, nullptr, l); break;
    case Q4Decode::ASYM_ZERO: decode_row<Q4Decode::ASYM_ZERO>(w, b, s, z, l); break;
    case Q4Decode::ASYM_MIN: decode_row<Q4Decode::ASYM_MIN>(w, b, s, z, l); break;
  }
}

// sum_k w[k] x[k] with 32 independent partial sums (two AVX-512 vectors of
// f32 lanes; the order is fixed, so results do not depend on threads), then
// a pairwise fold. Rounding: each partial sum holds K/32 terms, so the error
// is at most about (K/32 + 5) ulps of sum_k |w[k] x[k]|, well within the
// gamma_K bound the tests use.
template <class T>
T dot_row(const float* __restrict w, const T* __restrict x, int64_t K) {
  T acc[Q4_BLOCK] = {};
  int64_t k = 0;
  for (; k + Q4_BLOCK <= K; k += Q4_BLOCK)
    for (int j = 0; j < Q4_BLOCK; ++j) acc[j] = std::fma(T(w[k + j]), x[k + j], acc[j]);
  T tail = 0;
  for (; k < K; ++k) tail = std::fma(T(w[k]), x[k], tail);
  for (int h = Q4_BLOCK / 2; h >= 1; h /= 2)
    for (int j = 0; j < h; ++j) acc[j] += acc[j + h];
  return acc[0] + tail;
}

// --- f32 fast path: groups that are multiples of 32 ----------------------
// GCC vector extensions (not intrinsics: any target compiles them, and
// -march=native makes them AVX-512): a 16-byte block decodes into two
// 16-float registers that multiply x directly, no buffer round-trip, and the
// accumulators stay in registers because the tile of x rows (MT) is a
// compile-time constant. Multiply and add stay separate (GL_NO_FP_CONTRACT):
// needed for ASYM_MIN's q * d + m, harmless for the sums.
typedef float v16f __attribute__((vector_size(64)));

inline v16f load_v16f(const float* p) {
  v16f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// out[m * N + n] for m < MT: x rows x[m * K ...]; one weight row.
template <Q4Decode D, int MT>
void row_tile_f32(float* out, const float* x, const uint8_t* b, const float* s, const float* z,
                  const float* bias, int64_t n, const Q4Layout& l) {
  const int64_t K = l.K, G = l.group;
  v16f acc[MT][2];
  for (int m = 0; m < MT; ++m) acc[m][0] = acc[m][1] = v16f{};
  for (int64_t g = 0; g < K / G; ++g) {
    const float sg = s[g], zg = z ? z[g] : 0.0f;
    for (int64_t k0 = g * G; k0 < (g + 1) * G; k0 += Q4_BLOCK) {
      // Decoded through a 32-float stack block: GCC vectorises this loop
      // (zero-extend, convert, multiply) and forwards the stores to the
      // loads below; a vector-typed byte conversion it does not.
      alignas(64) float wb[Q4_BLOCK];
      const uint8_t* p = b + k0 / 2;
      for (int j = 0; j < 16; ++j) {
        wb[j] = decode_value<D>(p[j] & 15, sg, zg, l.code_offset);
        wb[j + 16] = decode_value<D>(p[j] >> 4, sg, zg, l.code_offset);
      }
      const v16f w_lo = load_v16f(wb), w_hi = load_v16f(wb + 16);
      for (int m = 0; m < MT; ++m) {
        acc[m][0] += w_lo * load_v16f(x + m * K + k0);
        acc[m][1] += w_hi * load_v16f(x + m * K + k0 + 16);
      }
    }
  }
  for (int m = 0; m < MT; ++m) {
    // Fixed pairwise fold of the 32 lanes.
    float lanes[32];
    std::memcpy(lanes, &acc[m][0], 64);
    std::memcpy(lanes + 16, &acc[m][1], 64);
    for (int h = 16; h >= 1; h /= 2)
      for (int j = 0; j < h; ++j) lanes[j] += lanes[j + h];
    out[m * l.N + n] = bias ? lanes[0] + bias[n] : lanes[0];
  }
}

template <Q4Decode D>
void row_f32(float* out, const float* x, const uint8_t* b, const float* s, const float* z,
             const float* bias, int64_t M, int64_t n, const Q4Layout& l) {
  int64_t m = 0;
  for (; m + 4 <= M; m += 4) row_tile_f32<D, 4>(out + m * l.N, x + m * l.K, b, s, z, bias, n, l);
  switch (M - m) {
    case 3: row_tile_f32<D, 3>(out + m * l.N, x + m * l.K, b, s, z, bias, n, l); break;
    case 2: row_tile_f32<D, 2>(out + m * l.N, x + m * l.K, b, s, z, bias, n, l); break;
    case 1: row_tile_f32<D, 1>(out + m * l.N, x + m * l.K, b, s, z, bias, n, l); break;
    default: break;
  }
}

void q4_matmul_f32_fast(float* out, const float* x, const int32_t* codes, const float* scales,
                        const float* zeros, const float* bias, int64_t M, const Q4Layout& l) {
  const int64_t N = l.N, K = l.K, W = l.words_per_row(), Gr = l.groups_per_row();
  const bool parallel = N * K > (int64_t(1) << 15) && N > 1;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t n = 0; n < N; ++n) {
    const uint8_t* b = reinterpret_cast<const uint8_t*>(codes + n * W);
    const float* s = scales + n * Gr;
    const float* z = zeros ? zeros + n * Gr : nullptr;
    switch (l.decode) {
      case Q4Decode::SYMMETRIC: row_f32<Q4Decode::SYMMETRIC>(out, x, b, s, z, bias, M, n, l); break;
      case Q4Decode::ASYM_ZERO: row_f32<Q4Decode::ASYM_ZERO>(out, x, b, s, z, bias, M, n, l); break;
      case Q4Decode::ASYM_MIN: row_f32<Q4Decode::ASYM_MIN>(out, x, b, s, z, bias, M, n, l); break;
    }
  }
}

}  // namespace

template <class T>
void q4_matmul_forward(T* out, const T* x, const int32_t* codes, const float* scales,
                       const float* zeros, const T* bias, int64_t M, const Q4Layout& l) {
  if (M == 0) return;
  if constexpr (std::is_same_v<T, float>) {
    if (l.group % Q4_BLOCK == 0)
      return q4_matmul_f32_fast(out, x, codes, scales, zeros, bias, M, l);
  }
  // f64, or groups that straddle blocks: decode each row into a buffer.
  const int64_t N = l.N, K = l.K, W = l.words_per_row(), Gr = l.groups_per_row();
  const bool parallel = N * K > (int64_t(1) << 15) && N > 1;
#pragma omp parallel if (parallel)
  {
    std::vector<float> w(size_t(K > 0 ? K : 1));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      decode_row_any(w.data(), reinterpret_cast<const uint8_t*>(codes + n * W), scales + n * Gr,
                     zeros ? zeros + n * Gr : nullptr, l);
      for (int64_t m = 0; m < M; ++m) {
        const T v = dot_row<T>(w.data(), x + m * K, K);
        // As linear: the product is rounded to T, then the bias is added.
        out[m * N + n] = bias ? v + bias[n] : v;
      }
    }
  }
}

void q4_dequantize(float* w, const int32_t* codes, const float* scales, const float* zeros,
                   const Q4Layout& l) {
  const int64_t N = l.N, K = l.K, W = l.words_per_row(), Gr = l.groups_per_row();
#pragma omp parallel for schedule(static) if (N * K > (int64_t(1) << 16))
  for (int64_t n = 0; n < N; ++n)
    decode_row_any(w + n * K, reinterpret_cast<const uint8_t*>(codes + n * W), scales + n * Gr,
                   zeros ? zeros + n * Gr : nullptr, l);
}

template void q4_matmul_forward<float>(float*, const float*, const int32_t*, const float*,
                                       const float*, const float*, int64_t, const Q4Layout&);
template void q4_matmul_forward<double>(double*, const double*, const int32_t*, const float*,
                                        const float*, const double*, int64_t, const Q4Layout&);

}  // namespace gl::cpu
