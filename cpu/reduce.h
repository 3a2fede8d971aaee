// Row reductions (CPU). Every reduction over arbitrary axes is brought to
// this form by the op (permute the reduced axes last, make contiguous).
#pragma once
#include <cstdint>

namespace gl::cpu {
// out[r] = sum_c in[r * cols + c]; accumulated in f64 in a fixed order.
template <class T>
void sum_rows(T* out, const T* in, int64_t rows, int64_t cols);
// out[c] = sum_r in[r * cols + c]: a reduction over the leading axes of a
// contiguous tensor (bias gradients), without first transposing it. Each
// column sums its rows in order 0, 1, ... in f64, the order sum_rows uses on
// the transposed data, so both paths give the same bits.
template <class T>
void sum_cols(T* out, const T* in, int64_t rows, int64_t cols);
}  // namespace gl::cpu
