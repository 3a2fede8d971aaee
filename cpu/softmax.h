// Softmax over the last dim C of a contiguous [rows, C] input (CPU reference).
//   forward:  y = exp(x - max(x)) / sum(exp(x - max(x)))  (subtracting the row
//             max leaves y unchanged and keeps exp from overflowing)
//   backward: dx = y * (dout - sum(dout * y))             (see softmax.cpp)
// https://pytorch.org/docs/stable/generated/torch.nn.functional.softmax.html
// Conventions: outputs, inputs, sizes; dx is overwritten; the backward reads
// the saved output y, not x. Row sums accumulate in double.
#pragma once
#include <cstdint>

namespace gl::cpu {
template <class T>
void softmax_forward(T* out, const T* x, int64_t rows, int64_t C);
template <class T>
void softmax_backward(T* dx, const T* dout, const T* out, int64_t rows, int64_t C);
}  // namespace gl::cpu
