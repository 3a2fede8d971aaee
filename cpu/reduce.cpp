// Row and column sums (CPU); contracts in cpu/reduce.h.
#include "cpu/reduce.h"

#include <algorithm>

namespace gl::cpu {

template <class T>
void sum_rows(T* out, const T* in, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 15))
  for (int64_t r = 0; r < rows; ++r) {
    double acc = 0.0;
    const T* p = in + r * cols;
    for (int64_t c = 0; c < cols; ++c) acc += double(p[c]);
    out[r] = T(acc);
  }
}

// Columns are cut into chunks of kChunk; a task walks all rows for its
// chunk, so the double accumulators stay in registers and each column's
// order of additions is fixed whatever the thread count.
template <class T>
void sum_cols(T* out, const T* in, int64_t rows, int64_t cols) {
  constexpr int64_t kChunk = 64;
  const int64_t nchunks = (cols + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 15))
  for (int64_t b = 0; b < nchunks; ++b) {
    const int64_t c0 = b * kChunk, width = std::min(kChunk, cols - c0);
    double acc[kChunk] = {};
    for (int64_t r = 0; r < rows; ++r) {
      const T* p = in + r * cols + c0;
#pragma omp simd
      for (int64_t j = 0; j < width; ++j) acc[j] += double(p[j]);
    }
    for (int64_t j = 0; j < width; ++j) out[c0 + j] = T(acc[j]);
  }
}

template void sum_rows<float>(float*, const float*, int64_t, int64_t);
template void sum_rows<double>(double*, const double*, int64_t, int64_t);
template void sum_cols<float>(float*, const float*, int64_t, int64_t);
template void sum_cols<double>(double*, const double*, int64_t, int64_t);

}  // namespace gl::cpu
