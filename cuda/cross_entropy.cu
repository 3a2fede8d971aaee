// Cross-entropy (CUDA): see cpu/cross_entropy.h. One block per row (grid-
// stride over rows). The forward reads each logit once: every thread keeps
// an online (max, sum) over its columns, and the block combines them by
// rescaling each thread's sum to the block max. Sums are in T (f32 here,
// double on the CPU reference). The only atomics are on the two int64
// status words (first bad row, valid-row count), which are exact.
#include <cmath>

#include "cuda/common.cuh"
#include "cuda/cross_entropy.h"
#include "cuda/reduce_utils.cuh"

namespace gl::cuda {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float exp_t(float x) { return expf(x); }
__device__ __forceinline__ double exp_t(double x) { return exp(x); }
__device__ __forceinline__ float log_t(float x) { return logf(x); }
__device__ __forceinline__ double log_t(double x) { return log(x); }

unsigned grid_for_rows(int64_t rows) {
  const int64_t cap = int64_t(1) << 20;
  return unsigned(rows < cap ? rows : cap);
}

template <class T, class I>
__global__ void cross_entropy_forward_kernel(T* losses, T* lse, int64_t* status, const T* logits,
                                             const I* targets, int64_t N, int64_t V,
                                             int64_t ignore_index) {
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const int64_t y = int64_t(targets[n]);
    // Both branches are uniform across the block (one row per block).
    if (y == ignore_index) {
      if (threadIdx.x == 0) losses[n] = lse[n] = T(0);
      continue;
    }
    if (y < 0 || y >= V) {
      if (threadIdx.x == 0) {
        atomicMin(reinterpret_cast<unsigned long long*>(&status[0]), (unsigned long long)(n));
        losses[n] = lse[n] = T(0);
      }
      continue;
    }
    const T* x = logits + n * V;
    T m = T(-INFINITY), s = T(0);
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
      const T xv = x[v];
      if (xv > m) {
        s = s * exp_t(m - xv);  // 0 * exp(-inf) = 0 on the first element
        m = xv;
      }
      // -inf logits (masked classes) add 0; without the test, a thread
      // whose first columns are all -inf would compute exp(-inf - -inf) = NaN.
      s += xv == T(-INFINITY) ? T(0) : exp_t(xv - m);
    }
    const T M = block_max(m);
    // Threads with no columns have s = 0 and m = -inf: exp(-inf) = 0.
    const T S = block_sum(s * exp_t(m - M));
    if (threadIdx.x == 0) {
      const T L = M + log_t(S);
      lse[n] = L;
      losses[n] = L - x[y];
      atomicAdd(reinterpret_cast<unsigned long long*>(&status[1]), 1ULL);
    }
  }
}

template <class T, class I>
__global__ void cross_entropy_backward_kernel(T* dlogits, const T* dloss, const T* logits,
                                              const T* lse, const I* targets, int64_t N,
                                              int64_t V, int64_t ignore_index, T inv_n_valid) {
  const T g = dloss[0] * inv_n_valid;
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const int64_t y = int64_t(targets[n]);
    T* dx = dlogits + n * V;
    const T* x = logits + n * V;
    const T L = lse[n];
    const bool ignored = y == ignore_index;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x)
      dx[v] = ignored ? T(0) : (exp_t(x[v] - L) - T(v == y ? 1 : 0)) * g;
  }
}

}  // namespace

template <class T, class I>
void cross_entropy_forward(T* losses, T* lse, int64_t* status, const T* logits, const I* targets,
                           int64_t N, int64_t V, int64_t ignore_index) {
  if (N == 0) return;
  cross_entropy_forward_kernel<T, I><<<grid_for_rows(N), kThreads, 0, current_stream()>>>(
      losses, lse, status, logits, targets, N, V, ignore_index);
  CUDA_CHECK_LAUNCH("cross_entropy_forward_kernel");
}

template <class T, class I>
void cross_entropy_backward(T* dlogits, const T* dloss, const T* logits, const T* lse,
                            const I* targets, int64_t N, int64_t V, int64_t ignore_index,
                            double inv_n_valid) {
  if (N == 0 || V == 0) return;
  cross_entropy_backward_kernel<T, I><<<grid_for_rows(N), kThreads, 0, current_stream()>>>(
      dlogits, dloss, logits, lse, targets, N, V, ignore_index, T(inv_n_valid));
  CUDA_CHECK_LAUNCH("cross_entropy_backward_kernel");
}

#define GL_INSTANTIATE(T, I)                                                                   \
  template void cross_entropy_forward<T, I>(T*, T*, int64_t*, const T*, const I*, int64_t,     \
                                            int64_t, int64_t);                                 \
  template void cross_entropy_backward<T, I>(T*, const T*, const T*, const T*, const I*,       \
                                             int64_t, int64_t, int64_t, double);
GL_INSTANTIATE(float, int32_t)
GL_INSTANTIATE(float, int64_t)
GL_INSTANTIATE(double, int32_t)
GL_INSTANTIATE(double, int64_t)
#undef GL_INSTANTIATE

}  // namespace gl::cuda
