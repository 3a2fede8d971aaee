#include "cuda/common.cuh"
#include "cuda/reduce.h"
#include "cuda/reduce_utils.cuh"

namespace gl::cuda {

namespace {

// One block per row (grid-stride over rows); threads stride over columns,
// then a block-wide tree reduction. No atomics: deterministic.
template <class T>
__global__ void sum_rows_kernel(T* out, const T* in, int64_t rows, int64_t cols) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* p = in + r * cols;
    T acc = T(0);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) acc += p[c];
    acc = block_sum(acc);
    if (threadIdx.x == 0) out[r] = acc;
  }
}

}  // namespace

template <class T>
void sum_rows(T* out, const T* in, int64_t rows, int64_t cols) {
  if (rows == 0) return;
  const unsigned grid = unsigned(rows < 65535 ? rows : 65535);
  sum_rows_kernel<T><<<grid, 256, 0, current_stream()>>>(out, in, rows, cols);
  CUDA_CHECK_LAUNCH("sum_rows_kernel");
}

template void sum_rows<float>(float*, const float*, int64_t, int64_t);
template void sum_rows<double>(double*, const double*, int64_t, int64_t);

}  // namespace gl::cuda
