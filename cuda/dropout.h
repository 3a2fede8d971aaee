// Inverted dropout kernels (CUDA): same contracts as cpu/dropout.h and, by
// construction, the same mask bit for bit for the same (seed, offset).
#pragma once
#include <cstdint>

namespace gl::cuda {
template <class T>
void dropout_forward(T* out, const T* x, int64_t n, double p, uint64_t seed, uint64_t offset);
template <class T>
void dropout_backward(T* dx, const T* dout, int64_t n, double p, uint64_t seed, uint64_t offset);
}  // namespace gl::cuda
