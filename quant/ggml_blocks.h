// ggml / llama.cpp tensor encodings, bit-identical to ggml's reference
// functions (ggml/src/ggml-quants.c quantize_row_q4_0_ref, _q4_1_ref,
// _q8_0_ref and the dequantize_row_* next to them; spec.md 4.1), plus the
// plain F32 / F16 / BF16 encodings so an exporter calls one function for
// every GGUF tensor type.
//
// Block layouts (ggml-common.h; ggml_half = IEEE binary16, little-endian):
//   Q4_0  32 values, 18 bytes: d (f16), qs[16]
//   Q4_1  32 values, 20 bytes: d (f16), m (f16), qs[16]
//   Q8_0  32 values, 34 bytes: d (f16), qs[32] (int8)
// Nibble order (Q4_0, Q4_1): qs[j] = code(x[j]) | code(x[j + 16]) << 4,
// i.e. the low nibbles hold elements 0..15 and the high nibbles 16..31 (NOT
// consecutive pairs).
//
// Rules, per block of 32 floats x:
//   Q4_0  max = the SIGNED value of largest magnitude (first one on ties);
//         d = max / -8; id = d ? 1/d : 0; code = MIN(15, trunc(x*id + 8.5f)),
//         i.e. round half UP of x*id, offset by 8; x' = (code - 8) * d16.
//         The extreme maps to -8 exactly; its opposite clips to +7.
//   Q4_1  d = (max - min) / 15; id = d ? 1/d : 0;
//         code = MIN(15, trunc((x - min)*id + 0.5f)); x' = code * d16 + m16.
//   Q8_0  d = amax / 127; id = d ? 1/d : 0; code = roundf(x*id) (half away
//         from zero); x' = code * d16.
// Invariants that make the bytes reproducible:
//   * codes are computed with the f32 d; only the STORED d (and m) are
//     rounded to f16 (round to nearest even, gl::f32_to_f16), and dequantize
//     uses the stored values: exactly as ggml and gguf-py's gguf.quants.
//   * every product and sum is rounded to f32 separately: no fused
//     multiply-add. GCC's default -ffp-contract=fast with -march=native
//     would fuse x*id + 8.5f into one FMA, which differs in the last bit and
//     so flips codes at rounding boundaries; ggml_blocks.cpp and
//     quantizer.cpp switch contraction off (GL_NO_FP_CONTRACT below; CUDA
//     code must use __fmul_rn / __fadd_rn). gguf-py (numpy) never fuses.
//   * inputs are finite; |x| large enough to overflow the f16 d (about
//     5.2e5 for Q4_0, 8.3e6 for Q8_0) gives an infinite d, as in ggml.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "quant/types.h"

namespace gl {

constexpr int64_t GGML_QK = 32;  // values per block for Q4_0, Q4_1, Q8_0

// POD block structs: the format's spec (ggml-common.h), checked by size.
struct BlockQ4_0 {
  uint16_t d;          // f16 bits of the scale
  uint8_t qs[GGML_QK / 2];
};
struct BlockQ4_1 {
  uint16_t d;          // f16 bits of the scale
  uint16_t m;          // f16 bits of the block minimum
  uint8_t qs[GGML_QK / 2];
};
struct BlockQ8_0 {
  uint16_t d;          // f16 bits of the scale
  int8_t qs[GGML_QK];
};
static_assert(sizeof(BlockQ4_0) == 18, "block_q4_0 is 18 bytes");
static_assert(sizeof(BlockQ4_1) == 20, "block_q4_1 is 20 bytes");
static_assert(sizeof(BlockQ8_0) == 34, "block_q8_0 is 34 bytes");

const char* ggml_type_name(GgmlType t);  // "Q4_0", "F16", ...
// Values per block (1 for F32/F16/BF16) and bytes per block.
int64_t ggml_block_size(GgmlType t);
size_t ggml_type_size(GgmlType t);

// Bytes of a row of n values; n % 32 == 0 for quantized types (error
// otherwise, naming the type and n).
size_t ggml_row_bytes(GgmlType t, int64_t n);

// Encodes n f32 values (any number of rows laid end to end; n must be a
// multiple of the block size) into ggml_row_bytes(t, n) bytes.
std::vector<uint8_t> ggml_quantize(GgmlType t, const float* x, int64_t n);
// Decodes n values from `blocks` (ggml_row_bytes(t, n) bytes) into out.
void ggml_dequantize(GgmlType t, const uint8_t* blocks, int64_t n, float* out);

// The reference block codecs (one block of 32 values each), for tests and
// for readers who want the rule without the dispatch.
void quantize_block_q4_0_ref(BlockQ4_0* y, const float* x);
void quantize_block_q4_1_ref(BlockQ4_1* y, const float* x);
void quantize_block_q8_0_ref(BlockQ8_0* y, const float* x);
void dequantize_block_q4_0(float* y, const BlockQ4_0* b);
void dequantize_block_q4_1(float* y, const BlockQ4_1* b);
void dequantize_block_q8_0(float* y, const BlockQ8_0* b);

}  // namespace gl

// Put after the #includes of a .cpp whose f32 arithmetic must round every
// operation separately (no FMA contraction), e.g. to be bit-exact with ggml.
#if defined(__clang__)
#define GL_NO_FP_CONTRACT _Pragma("STDC FP_CONTRACT OFF")
#elif defined(__GNUC__)
#define GL_NO_FP_CONTRACT _Pragma("GCC optimize(\"fp-contract=off\")")
#else
#define GL_NO_FP_CONTRACT
#endif
