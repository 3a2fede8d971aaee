// Knowledge distillation (CUDA): see cpu/distill.h. One block per row
// (grid-stride over rows). The forward keeps an online (max, sum) per
// thread for student and teacher in one read of the row, combines them
// across the block by rescaling to the block max (as cuda/cross_entropy.cu),
// then a second pass sums the KL terms with the row's lse known. Sums are in
// T (the CPU reference sums in double). No atomics: every row is one block.
#include <cmath>

#include "cuda/common.cuh"
#include "cuda/distill.h"
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

// Folds z into a running (max m, sum s of exp(. - m)); -inf adds 0 (a
// thread whose first values are -inf would otherwise form exp(-inf + inf)).
template <class T>
__device__ __forceinline__ void online_add(T& m, T& s, T z) {
  if (z > m) {
    s = s * exp_t(m - z);  // 0 * exp(-inf) = 0 on the first element
    m = z;
  }
  s += z == T(-INFINITY) ? T(0) : exp_t(z - m);
}

// Block-wide lse from each thread's (m, s); every thread receives it.
template <class T>
__device__ T block_lse(T m, T s) {
  const T M = block_max(m);
  if (M == T(-INFINITY)) return M;
  return M + log_t(block_sum(s * exp_t(m - M)));
}

template <class T>
__global__ void distill_kl_forward_kernel(T* kl, T* lse_s, T* lse_t, const T* student,
                                          const T* teacher, const T* weight, int64_t N,
                                          int64_t V, T inv_tau) {
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    // Uniform across the block (one row per block).
    if (weight && weight[n] == T(0)) {
      if (threadIdx.x == 0) kl[n] = lse_s[n] = lse_t[n] = T(0);
      continue;
    }
    const T* s = student + n * V;
    const T* t = teacher + n * V;
    T ms = T(-INFINITY), ss = T(0), mt = T(-INFINITY), st = T(0);
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
      online_add(ms, ss, s[v] * inv_tau);
      online_add(mt, st, t[v] * inv_tau);
    }
    const T Ls = block_lse(ms, ss);
    const T Lt = block_lse(mt, st);
    T acc = T(0);
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
      const T log_pt = t[v] * inv_tau - Lt;
      const T pt = exp_t(log_pt);
      if (pt != T(0)) acc += pt * (log_pt - (s[v] * inv_tau - Ls));  // 0 log 0 = 0
    }
    const T total = block_sum(acc);
    if (threadIdx.x == 0) {
      kl[n] = total;
      lse_s[n] = Ls;
      lse_t[n] = Lt;
    }
  }
}

template <class T>
__global__ void distill_kl_backward_kernel(T* dstudent, const T* dloss, const T* student,
                                           const T* teacher, const T* lse_s, const T* lse_t,
                                           const T* weight, int64_t N, int64_t V, T inv_tau,
                                           T coef) {
  const T g = dloss[0] * coef;
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    T* d = dstudent + n * V;
    const T w = weight ? weight[n] : T(1);
    const T* s = student + n * V;
    const T* t = teacher + n * V;
    const T Ls = lse_s[n], Lt = lse_t[n], gw = g * w;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x)
      d[v] = w == T(0) ? T(0)
                       : gw * (exp_t(s[v] * inv_tau - Ls) - exp_t(t[v] * inv_tau - Lt));
  }
}

}  // namespace

template <class T>
void distill_kl_forward(T* kl, T* lse_s, T* lse_t, const T* student, const T* teacher,
                        const T* weight, int64_t N, int64_t V, double inv_tau) {
  if (N == 0) return;
  distill_kl_forward_kernel<T><<<grid_for_rows(N), kThreads, 0, current_stream()>>>(
      kl, lse_s, lse_t, student, teacher, weight, N, V, T(inv_tau));
  CUDA_CHECK_LAUNCH("distill_kl_forward_kernel");
}

template <class T>
void distill_kl_backward(T* dstudent, const T* dloss, const T* student, const T* teacher,
                         const T* lse_s, const T* lse_t, const T* weight, int64_t N, int64_t V,
                         double inv_tau, double coef) {
  if (N == 0 || V == 0) return;
  distill_kl_backward_kernel<T><<<grid_for_rows(N), kThreads, 0, current_stream()>>>(
      dstudent, dloss, student, teacher, lse_s, lse_t, weight, N, V, T(inv_tau), T(coef));
  CUDA_CHECK_LAUNCH("distill_kl_backward_kernel");
}

#define GL_INSTANTIATE(T)                                                                      \
  template void distill_kl_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t,       \
                                      int64_t, double);                                        \
  template void distill_kl_backward<T>(T*, const T*, const T*, const T*, const T*, const T*,   \
                                       const T*, int64_t, int64_t, double, double);
GL_INSTANTIATE(float)
GL_INSTANTIATE(double)
#undef GL_INSTANTIATE

}  // namespace gl::cuda
