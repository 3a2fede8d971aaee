// 4-bit packed weights dequantized inside the matrix product (CPU):
//   out[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n]),   w = decode(codes, scales, zeros)
// the integer inference path of issue 5 item 5. quant/packed_linear.h packs
// the weights; this file only decodes and multiplies.
//
// Packed layout (Q4Layout, shared with cuda/q4_matmul.h). The weight is
// [N, K] (torch [out, in]); each row is cut into blocks of 32 codes along K,
// the last block zero-padded, so a row is 16 * ceil(K / 32) bytes (stored as
// int32 words, 4 per block, little-endian). Inside a block, byte j holds
// code j in its LOW nibble and code j + 16 in its HIGH nibble (ggml's Q4_0
// order): 16 bytes `& 15` give 16 consecutive codes and `>> 4` the next 16,
// so a SIMD decode is one zero-extend per 16 codes, never a shuffle.
// Scales (and zeros) are f32 [N, K / group], one per group of `group`
// consecutive codes of a row (the quantizer's per-group / per-channel
// scales; group need not be a multiple of 32).
//
// Decode of an unsigned nibble u (the quantizer's dequantize_value, one f32
// rounding per operation, no fused multiply-add, so the decoded weight is
// bit-identical to dequantize(quantize(w))):
//   SYMMETRIC  float(u + code_offset) * s         (code_offset = -8: q = u - 8)
//   ASYM_ZERO  s * (float(u) - z)                 (GPTQ: scale * (q - zero))
//   ASYM_MIN   float(u) * s + m                   (ggml Q4_1: q * d + m)
// The products with x then accumulate in T (f32 for f32 inputs) in an
// order of the kernel's choosing: only the summation order differs from
// linear(x, dequantized w).
// Conventions: outputs, inputs, weights, sizes; outputs are overwritten.
#pragma once
#include <cstdint>

namespace gl {

enum class Q4Decode : uint8_t { SYMMETRIC, ASYM_ZERO, ASYM_MIN };

constexpr int64_t Q4_BLOCK = 32;  // codes per packed block (16 bytes)

struct Q4Layout {
  int64_t N = 0, K = 0;  // weight rows (out features) and columns (in features)
  int64_t group = 0;     // codes per scale along K; divides K
  Q4Decode decode = Q4Decode::SYMMETRIC;
  int code_offset = 0;   // SYMMETRIC: q = u + code_offset (-8 for 4 bits)
  int64_t blocks_per_row() const { return (K + Q4_BLOCK - 1) / Q4_BLOCK; }
  int64_t words_per_row() const { return blocks_per_row() * 4; }  // int32 words
  int64_t groups_per_row() const { return group > 0 ? K / group : 0; }
};

}  // namespace gl

namespace gl::cpu {

// out [M, N] = x [M, K] . decode(codes)^T (+ bias [N] when non-null).
// codes: [N, words_per_row] int32; scales, zeros: [N, groups_per_row]
// (zeros null for SYMMETRIC). OpenMP over the N output rows.
template <class T>
void q4_matmul_forward(T* out, const T* x, const int32_t* codes, const float* scales,
                       const float* zeros, const T* bias, int64_t M, const Q4Layout& l);

// w [N, K] f32 = decode(codes): the dequantized weight, bit for bit.
void q4_dequantize(float* w, const int32_t* codes, const float* scales, const float* zeros,
                   const Q4Layout& l);

}  // namespace gl::cpu
