// Elementwise kernels (CPU). Binary ops broadcast through BroadcastIndex:
// the output's shape plus each input's strides in that shape (0 along a
// broadcast dim), so inputs may be any strided view.
// Conventions for every kernel file: outputs, inputs, weights, sizes.
#pragma once
#include <cstdint>

namespace gl {

enum class BinaryOp : uint8_t { ADD, SUB, MUL, DIV };

constexpr int kMaxBroadcastDims = 8;
struct BroadcastIndex {
  int ndim = 0;
  int64_t shape[kMaxBroadcastDims] = {};
  int64_t a_strides[kMaxBroadcastDims] = {};
  int64_t b_strides[kMaxBroadcastDims] = {};
  bool contiguous = false;  // both inputs contiguous with the output's shape
};

namespace cpu {
template <class T>
void binary_forward(T* out, const T* a, const T* b, BinaryOp op, const BroadcastIndex& idx,
                    int64_t n);
// out = alpha * x + beta (scale, add a scalar, negate).
template <class T>
void affine_forward(T* out, const T* x, double alpha, double beta, int64_t n);
// dst += src.
template <class T>
void accumulate(T* dst, const T* src, int64_t n);
// y[r, c] += bias[c] for a contiguous [rows, cols] y (Linear's bias, in place).
template <class T>
void add_bias_rows(T* y, const T* bias, int64_t rows, int64_t cols);
}  // namespace cpu

}  // namespace gl
