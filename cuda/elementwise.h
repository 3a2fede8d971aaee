// Elementwise kernels (CUDA): same contracts as cpu/elementwise.h.
#pragma once
#include "cpu/elementwise.h"

namespace gl::cuda {
template <class T>
void binary_forward(T* out, const T* a, const T* b, BinaryOp op, const BroadcastIndex& idx,
                    int64_t n);
template <class T>
void affine_forward(T* out, const T* x, double alpha, double beta, int64_t n);
template <class T>
void accumulate(T* dst, const T* src, int64_t n);
template <class T>
void add_bias_rows(T* y, const T* bias, int64_t rows, int64_t cols);
}  // namespace gl::cuda
