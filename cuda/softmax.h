// Softmax over the last dim (CUDA): same contracts as cpu/softmax.h; f32
// reduces in f32 (block trees), f64 in f64.
#pragma once
#include <cstdint>

namespace gl::cuda {
template <class T>
void softmax_forward(T* out, const T* x, int64_t rows, int64_t C);
template <class T>
void softmax_backward(T* dx, const T* dout, const T* out, int64_t rows, int64_t C);
}  // namespace gl::cuda
