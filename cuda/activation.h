// Elementwise activation kernels (CUDA): same contracts as cpu/activation.h
// (evaluated in T, with CUDA's erf/tanh/exp for that type).
#pragma once
#include "cpu/activation.h"

namespace gl::cuda {
template <class T>
void gelu_forward(T* out, const T* x, int64_t n, GeluKind kind);
template <class T>
void gelu_backward(T* dx, const T* dout, const T* x, int64_t n, GeluKind kind);
// Contracts in cpu/activation.h. dbias is reduced deterministically (per-block
// column partials, then a fixed-order pass), never with atomics.
template <class T>
void bias_gelu_forward(T* out, const T* y, const T* bias, int64_t rows, int64_t C, GeluKind kind);
template <class T>
void bias_gelu_backward(T* dy, T* dbias, const T* dout, const T* y, const T* bias, int64_t rows,
                        int64_t C, GeluKind kind);
}  // namespace gl::cuda
