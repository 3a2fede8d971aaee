// Elementwise activation kernels (CUDA): same contracts as cpu/activation.h
// (evaluated in T, with CUDA's erf/tanh/exp for that type).
#pragma once
#include "cpu/activation.h"

namespace gl::cuda {
template <class T>
void gelu_forward(T* out, const T* x, int64_t n, GeluKind kind);
template <class T>
void gelu_backward(T* dx, const T* dout, const T* x, int64_t n, GeluKind kind);
}  // namespace gl::cuda
