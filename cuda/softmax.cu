// Softmax CUDA kernels (contracts and backward derivation: cpu/softmax.{h,cpp}).
// One block per row (grid-stride over rows), threads stride over the C
// columns; block_max and block_sum from reduce_utils.cuh do the row
// reductions. exp(x - max) is recomputed in the write pass rather than
// stored, so the kernel needs no row-sized scratch.
#include <algorithm>

#include "cuda/common.cuh"
#include "cuda/reduce_utils.cuh"
#include "cuda/softmax.h"

namespace gl::cuda {

namespace {

constexpr int kMaxThreads = 256;

// Threads per row block: a multiple of 32 covering C, at most kMaxThreads.
inline int threads_for(int64_t C) {
  return C >= kMaxThreads ? kMaxThreads : int((C + 31) / 32 * 32);
}
inline unsigned grid_for_rows(int64_t rows) { return unsigned(std::min<int64_t>(rows, 65535)); }

template <class T>
__global__ void softmax_forward_kernel(T* out, const T* x, int64_t rows, int64_t C) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * C;
    T mx = T(-INFINITY);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) mx = max(mx, xr[c]);
    mx = block_max(mx);
    T sum = T(0);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) sum += exp(xr[c] - mx);
    const T inv = T(1) / block_sum(sum);
    T* o = out + r * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) o[c] = exp(xr[c] - mx) * inv;
  }
}

// dx = y * (dout - sum(dout * y)).
template <class T>
__global__ void softmax_backward_kernel(T* dx, const T* dout, const T* out, int64_t rows,
                                        int64_t C) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* gr = dout + r * C;
    const T* yr = out + r * C;
    T dot = T(0);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dot += gr[c] * yr[c];
    dot = block_sum(dot);
    T* d = dx + r * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) d[c] = yr[c] * (gr[c] - dot);
  }
}

}  // namespace

template <class T>
void softmax_forward(T* out, const T* x, int64_t rows, int64_t C) {
  if (rows == 0 || C == 0) return;
  softmax_forward_kernel<T><<<grid_for_rows(rows), threads_for(C), 0, current_stream()>>>(
      out, x, rows, C);
  CUDA_CHECK_LAUNCH("softmax_forward_kernel");
}

template <class T>
void softmax_backward(T* dx, const T* dout, const T* out, int64_t rows, int64_t C) {
  if (rows == 0 || C == 0) return;
  softmax_backward_kernel<T><<<grid_for_rows(rows), threads_for(C), 0, current_stream()>>>(
      dx, dout, out, rows, C);
  CUDA_CHECK_LAUNCH("softmax_backward_kernel");
}

template void softmax_forward<float>(float*, const float*, int64_t, int64_t);
template void softmax_forward<double>(double*, const double*, int64_t, int64_t);
template void softmax_backward<float>(float*, const float*, const float*, int64_t, int64_t);
template void softmax_backward<double>(double*, const double*, const double*, int64_t, int64_t);

}  // namespace gl::cuda
