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
template <class T>
void fake_quant_backward_x(T* dx, const T* dout, const T* x, const T* scale, const T* zero,
                           const FakeQuantParams& p);
template <class T>
void fake_quant_backward_scale(T* dscale, const T* dout, const T* x, const T* scale,
                               const T* zero, const FakeQuantParams& p, double grad_scale);
template <class T>
void per_token_params(T* scale, T* zero, const T* x, int64_t rows, int64_t cols, bool symmetric,
                      double qmin, double qmax);
}  // namespace gl::cuda
