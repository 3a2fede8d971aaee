// The integer inference path (issue 5 item 5): a weight quantized to 4-bit
// codes, packed two per byte, and a linear layer that dequantizes the codes
// inside its matmul kernel (cpu/q4_matmul.h, cuda/q4_matmul.h), so the
// weight streams from memory at half a byte per value. Inference only: no
// autograd.
//
// Contract: for a 4-bit spec and any x,
//   packed_linear(x, PackedWeight::pack(w, spec), bias)
//     == linear(x, fake_quantize_reference(w, spec), bias)
// up to float summation order: the decoded weights are bit-identical to
// fake_quantize_reference (same codes, same stored scales, the same f32
// operations without fused multiply-add), only the order in which the K
// products are added differs. Each side's error is at most gamma_K =
// K*u/(1 - K*u) times sum_k |x_k w_k| (u = 2^-24 in f32, 2^-53 in f64), so
// the two agree within 2 gamma_K sum_k |x_k w_k| per output: the tolerance
// the tests use.
//
// Supported specs: bits == 4, symmetric (int4_probe, sym7_g128, sym8_g128,
// gptq_sym4, q4_0), ASYM_ZERO (w4a16_g128) and ASYM_MIN (q4_1); per group
// (any group size dividing in), per channel or per tensor; any scale rule
// and rounding quantize() accepts (a Generator for stochastic rounding).
//
// Layout (Q4Layout in cpu/q4_matmul.h): codes is an i32 tensor [out,
// 4 * ceil(in / 32)]: each row is blocks of 32 codes in 16 bytes, byte j =
// u(j) | u(j + 16) << 4 with u the unsigned code (q + 8 symmetric, q
// asymmetric), the last block zero-padded. This is ggml's Q4_0 nibble order
// without the interleaved scales: the low and high nibbles of 16 bytes are
// 32 consecutive values, which decode with two zero-extends and no shuffle
// (CPU, AVX-512), and a CUDA lane's 32-bit word holds 8 codes of one block.
// scales / zeros are f32 [out, in / group] (per channel: group = in; per
// tensor: the one scale repeated per row), the values quantize() stores.
#pragma once
#include <cstdint>

#include "cpu/q4_matmul.h"
#include "quant/quantizer.h"

namespace gl {

struct PackedWeight {
  QuantSpec spec;
  int64_t out = 0, in = 0;  // weight shape [out, in]
  int64_t group = 0;        // codes per scale along in
  Tensor codes;             // i32 [out, 4 * ceil(in / 32)], the packed nibbles
  Tensor scales;            // f32 [out, in / group]
  Tensor zeros;             // f32 [out, in / group]: ASYM_ZERO z or ASYM_MIN m;
                            // undefined for symmetric specs

  // Quantizes w [out, in] (any float dtype, CPU or CUDA) with spec and
  // packs it on w's device. `given` scales as in quantize(w, spec, given).
  static PackedWeight pack(const Tensor& w, const QuantSpec& spec, Generator* gen = nullptr);
  static PackedWeight pack(const Tensor& w, const QuantSpec& spec, const QuantScales& given,
                           Generator* gen = nullptr);

  Device device() const { return codes.device(); }
  PackedWeight to(Device device) const;
  // f32 [out, in] on device(): bit-identical to fake_quantize_reference.
  Tensor dequantize() const;
  // Bytes the matmul reads for the weight: packed codes plus scales/zeros.
  size_t weight_bytes() const;
  Q4Layout layout() const;
};

// y [..., out] = x [..., in] . dequantize(w)^T + bias [out]. x f32 or f64 on
// w's device. Up to 32 rows of x run the packed kernel; more rows dequantize
// the weight once and use the f32/f64 GEMM (the same weight values, so the
// contract above holds either way).
Tensor packed_linear(const Tensor& x, const PackedWeight& w, const Tensor& bias = Tensor());

// Rows of x above which packed_linear dequantizes and calls the GEMM.
constexpr int64_t PACKED_LINEAR_MAX_KERNEL_ROWS = 32;

}  // namespace gl
