#include "cuda/common.cuh"
#include "cuda/elementwise.h"

namespace gl::cuda {

namespace {

constexpr int kThreads = 256;

template <class T>
__device__ __forceinline__ T apply(BinaryOp op, T x, T y) {
  switch (op) {
    case BinaryOp::ADD: return x + y;
    case BinaryOp::SUB: return x - y;
    case BinaryOp::MUL: return x * y;
    case BinaryOp::DIV: return x / y;
  }
  return T(0);
}

template <class T>
__global__ void binary_forward_kernel(T* out, const T* a, const T* b, BinaryOp op,
                                      BroadcastIndex idx, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    if (idx.contiguous) {
      out[i] = apply(op, a[i], b[i]);
      continue;
    }
    int64_t rem = i, ao = 0, bo = 0;
    for (int d = idx.ndim - 1; d >= 0; --d) {
      const int64_t k = rem % idx.shape[d];
      rem /= idx.shape[d];
      ao += k * idx.a_strides[d];
      bo += k * idx.b_strides[d];
    }
    out[i] = apply(op, a[ao], b[bo]);
  }
}

template <class T>
__global__ void affine_forward_kernel(T* out, const T* x, T alpha, T beta, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = alpha * x[i] + beta;
}

template <class T>
__global__ void accumulate_kernel(T* dst, const T* src, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] += src[i];
}

template <class T>
__global__ void add_bias_rows_kernel(T* y, const T* bias, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] += bias[i % cols];
}

}  // namespace

template <class T>
void add_bias_rows(T* y, const T* bias, int64_t rows, int64_t cols) {
  if (rows * cols == 0) return;
  add_bias_rows_kernel<T><<<blocks_for(rows * cols, kThreads), kThreads, 0, current_stream()>>>(
      y, bias, rows, cols);
  CUDA_CHECK_LAUNCH("add_bias_rows_kernel");
}

template <class T>
void binary_forward(T* out, const T* a, const T* b, BinaryOp op, const BroadcastIndex& idx,
                    int64_t n) {
  if (n == 0) return;
  binary_forward_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, current_stream()>>>(
      out, a, b, op, idx, n);
  CUDA_CHECK_LAUNCH("binary_forward_kernel");
}

template <class T>
void affine_forward(T* out, const T* x, double alpha, double beta, int64_t n) {
  if (n == 0) return;
  affine_forward_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, current_stream()>>>(
      out, x, T(alpha), T(beta), n);
  CUDA_CHECK_LAUNCH("affine_forward_kernel");
}

template <class T>
void accumulate(T* dst, const T* src, int64_t n) {
  if (n == 0) return;
  accumulate_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, current_stream()>>>(dst, src, n);
  CUDA_CHECK_LAUNCH("accumulate_kernel");
}

#define GL_INSTANTIATE(T)                                                                  \
  template void binary_forward<T>(T*, const T*, const T*, BinaryOp, const BroadcastIndex&, \
                                  int64_t);                                                \
  template void affine_forward<T>(T*, const T*, double, double, int64_t);                  \
  template void accumulate<T>(T*, const T*, int64_t);                                      \
  template void add_bias_rows<T>(T*, const T*, int64_t, int64_t);
GL_INSTANTIATE(float)
GL_INSTANTIATE(double)
#undef GL_INSTANTIATE

}  // namespace gl::cuda
