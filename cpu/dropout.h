// Inverted dropout kernels (CPU reference; Srivastava et al. 2014,
// https://pytorch.org/docs/stable/generated/torch.nn.Dropout.html).
//
// The mask is a pure function of (seed, offset, i): element i of the
// contiguous input is kept iff philox_uniform(seed, offset, i) >= p
// (core/philox.h), and kept values are scaled by 1 / (1 - p) so the
// expectation is unchanged. CPU and CUDA evaluate the same expression (the
// f32 draw compared with p in double, exact on both), so they keep exactly
// the same elements, and the backward regenerates the mask instead of
// storing it.
// Conventions: outputs, inputs, sizes; dx is overwritten. p in [0, 1).
#pragma once
#include <cstdint>

namespace gl::cpu {
// out[i] = keep(i) ? x[i] * (1 / (1 - p)) : 0.
template <class T>
void dropout_forward(T* out, const T* x, int64_t n, double p, uint64_t seed, uint64_t offset);
// dx[i] = keep(i) ? dout[i] * (1 / (1 - p)) : 0, the same mask as the forward.
template <class T>
void dropout_backward(T* dx, const T* dout, int64_t n, double p, uint64_t seed, uint64_t offset);
}  // namespace gl::cpu
