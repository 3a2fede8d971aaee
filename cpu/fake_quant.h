// Fake-quantization kernels (CPU reference): x_hat = dequantize(quantize(x))
// with a per-tensor, per-row or per-group scale, the straight-through
// backward for x, and the LSQ gradient for the scale. Scalar arithmetic in
// cpu/fake_quant_math.h (shared with cuda/fake_quant.cu, bit for bit).
//
// Layout: x is contiguous [rows, cols]; group g of row r covers columns
// [g * group_size, (g + 1) * group_size); scale and zero are contiguous
// [scale_rows, cols / group_size] with scale_rows == rows (one scale per
// row and group) or 1 (shared by every row: per-tensor when group_size ==
// cols). zero == nullptr means symmetric (z = 0).
// Stochastic rounding draws element i's uniform at Philox (seed, offset, i),
// i indexing the contiguous x; the caller reserves ceil(rows * cols / 4)
// blocks (Generator::advance) so no two calls share draws.
// Conventions: outputs, inputs, weights, sizes; outputs are overwritten.
#pragma once
#include <cstdint>

#include "core/philox.h"  // GL_HOST_DEVICE
#include "quant/types.h"

namespace gl {

struct FakeQuantParams {
  int64_t rows = 0, cols = 0;
  int64_t group_size = 1;  // divides cols
  int64_t scale_rows = 1;  // 1 or rows
  double qmin = 0, qmax = 0;
  QuantRounding rounding = QuantRounding::NEAREST_EVEN;
  uint64_t seed = 0, offset = 0;  // STOCHASTIC only
  GL_HOST_DEVICE int64_t groups() const { return group_size > 0 ? cols / group_size : 0; }
};

namespace cpu {
// out = (clamp(round(x / s) + z, qmin, qmax) - z) * s.
template <class T>
void fake_quant_forward(T* out, const T* x, const T* scale, const T* zero,
                        const FakeQuantParams& p);
// fake_quant_forward of an f32 x that also writes x_hat rounded to bf16
// (f16 false) or f16 into out_half (their bits), exactly as Tensor::to
// rounds (core/dtype.h f32_to_bf16 / f32_to_f16): the output's low-precision
// shadow (core/storage.h) from the same pass, each group rounded while it is
// still in cache.
void fake_quant_forward_lowp(float* out, uint16_t* out_half, const float* x, const float* scale,
                             const float* zero, const FakeQuantParams& p, bool f16);
// Clipped straight-through: dx = dout where qmin <= round(x / s) + z <= qmax, else 0.
template <class T>
void fake_quant_backward_x(T* dx, const T* dout, const T* x, const T* scale, const T* zero,
                           const FakeQuantParams& p);
// LSQ: dscale[k] = grad_scale * sum over scale entry k's elements of
// dout * d x_hat / d s (fq::lsq_dxhat_dscale); a fixed-order sum in double.
template <class T>
void fake_quant_backward_scale(T* dscale, const T* dout, const T* x, const T* scale,
                               const T* zero, const FakeQuantParams& p, double grad_scale);
// Dynamic per-token parameters (fq::per_token_params) of each row of a
// contiguous [rows, cols] x: scale [rows]; zero [rows] unless symmetric
// (then zero may be nullptr). NaNs are ignored by the row min/max.
template <class T>
void per_token_params(T* scale, T* zero, const T* x, int64_t rows, int64_t cols, bool symmetric,
                      double qmin, double qmax);
}  // namespace cpu

}  // namespace gl
