// Row reductions (CUDA): same contract as cpu/reduce.h (f32 accumulates in
// f32 within a block tree, f64 in f64).
#pragma once
#include <cstdint>

namespace gl::cuda {
template <class T>
void sum_rows(T* out, const T* in, int64_t rows, int64_t cols);
}  // namespace gl::cuda
