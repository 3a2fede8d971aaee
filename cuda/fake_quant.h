// Fake-quantization kernels (CUDA): the contracts of cpu/fake_quant.h, the
// same scalar arithmetic (cpu/fake_quant_math.h), so forward outputs agree
// bit for bit with the CPU; the scale gradient is a per-entry block
// reduction in double (deterministic; its summation order differs from the
// CPU's, so it agrees to rounding). Plain C++ header: included by .cpp files.
#pragma once
#include "cpu/fake_quant.h"

namespace gl::cuda {
template <class T>
void fake_quant_forward(T* out, const T* x, const T* scale, const T* zero,
                        const FakeQuantParams& p);
// The CPU's fake_quant_forward_lowp: x_hat and its bf16/f16 rounding
// (__float2bfloat16_rn / __float2half_rn, as the device's Tensor::to) from
// one kernel, each thread writing both of its element's outputs.
void fake_quant_forward_lowp(float* out, uint16_t* out_half, const float* x, const float* scale,
                             const float* zero, const FakeQuantParams& p, bool f16);
template <class T>
void fake_quant_backward_x(T* dx, const T* dout, const T* x, const T* scale, const T* zero,
                           const FakeQuantParams& p);
template <class T>
void fake_quant_backward_scale(T* dscale, const T* dout, const T* x, const T* scale,
                               const T* zero, const FakeQuantParams& p, double grad_scale);
// QAT's per-group ABSMAX scales of f32 weights in groups of G consecutive
// elements (symmetric: max|w| / divisor; asym_zero: GPTQ's range with 0
// included and z = rint(-min / s)); all-zero groups get s = 1, z = 0.
// zero may be null when !asym_zero.
void group_absmax_scales(float* scale, float* zero, const float* w, int64_t n_groups, int64_t G,
                         double divisor, bool asym_zero);
template <class T>
void per_token_params(T* scale, T* zero, const T* x, int64_t rows, int64_t cols, bool symmetric,
                      double qmin, double qmax);
}  // namespace gl::cuda
