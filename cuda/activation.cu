// GELU CUDA kernels (contracts in cpu/activation.h, derivative derivations
// in cpu/activation.cpp): grid-stride elementwise loops evaluated in T.
#include <algorithm>

#include "core/tensor.h"
#include "cuda/activation.h"
#include "cuda/common.cuh"

namespace gl::cuda {

namespace {

constexpr int kThreads = 256;
constexpr double kInvSqrt2 = 0.70710678118654752440;     // 1 / sqrt(2)
constexpr double kInvSqrt2Pi = 0.39894228040143267794;   // 1 / sqrt(2 pi)
constexpr double kSqrt2OverPi = 0.79788456080286535588;  // sqrt(2 / pi)
constexpr double kTanhCubic = 0.044715;

template <class T>
__device__ __forceinline__ T gelu_value(T x, GeluKind kind) {
  if (kind == GeluKind::ERF) return T(0.5) * x * (T(1) + erf(x * T(kInvSqrt2)));
  const T u = T(kSqrt2OverPi) * (x + T(kTanhCubic) * x * x * x);
  return T(0.5) * x * (T(1) + tanh(u));
}

template <class T>
__device__ __forceinline__ T gelu_grad(T x, GeluKind kind) {
  if (kind == GeluKind::ERF)
    return T(0.5) * (T(1) + erf(x * T(kInvSqrt2))) + x * T(kInvSqrt2Pi) * exp(T(-0.5) * x * x);
  const T t = tanh(T(kSqrt2OverPi) * (x + T(kTanhCubic) * x * x * x));
  const T du = T(kSqrt2OverPi) * (T(1) + T(3 * kTanhCubic) * x * x);
  return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du;
}

template <class T>
__global__ void gelu_forward_kernel(T* out, const T* x, int64_t n, GeluKind kind) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = gelu_value(x[i], kind);
}

template <class T>
__global__ void gelu_backward_kernel(T* dx, const T* dout, const T* x, int64_t n,
                                     GeluKind kind) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = dout[i] * gelu_grad(x[i], kind);
}

// out[i] = gelu(y[i] + bias[i % C]): the bias add costs no pass of its own.
template <class T>
__global__ void bias_gelu_forward_kernel(T* out, const T* y, const T* bias, int64_t n, int64_t C,
                                         GeluKind kind) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = gelu_value(T(y[i] + bias[i % C]), kind);
}

// dbias's column sums in two deterministic passes, as cuda/norm.cu's
// parameter gradients: blocks of 32 columns x 8 row lanes write dy and one
// partial per column and row chunk; then one thread per column adds the
// chunks in order.
constexpr int kTileCols = 32, kTileRows = 8;
constexpr int64_t kRowsPerChunk = 64, kMaxRowChunks = 256;

template <class T>
__global__ void bias_gelu_backward_kernel(T* dy, T* partial, const T* dout, const T* y,
                                          const T* bias, int64_t rows, int64_t C, GeluKind kind) {
  __shared__ T lanes[kTileRows][kTileCols];
  const int64_t c = int64_t(blockIdx.x) * kTileCols + threadIdx.x;
  T acc = T(0);
  if (c < C) {
    const T b = bias[c];
    for (int64_t r = int64_t(blockIdx.y) * kTileRows + threadIdx.y; r < rows;
         r += int64_t(gridDim.y) * kTileRows) {
      const int64_t i = r * C + c;
      const T d = dout[i] * gelu_grad(T(y[i] + b), kind);
      dy[i] = d;
      acc += d;
    }
  }
  if (!partial) return;  // uniform over the block: no barrier is skipped by some threads only
  lanes[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    T sum = T(0);
    for (int k = 0; k < kTileRows; ++k) sum += lanes[k][threadIdx.x];
    partial[int64_t(blockIdx.y) * C + c] = sum;
  }
}

template <class T>
__global__ void column_partials_finish_kernel(T* dbias, const T* partial, int64_t chunks,
                                              int64_t C) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C;
       c += int64_t(gridDim.x) * blockDim.x) {
    T sum = T(0);
    for (int64_t k = 0; k < chunks; ++k) sum += partial[k * C + c];
    dbias[c] += sum;
  }
}

}  // namespace

template <class T>
void bias_gelu_forward(T* out, const T* y, const T* bias, int64_t rows, int64_t C, GeluKind kind) {
  const int64_t n = rows * C;
  if (n == 0) return;
  bias_gelu_forward_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, current_stream()>>>(
      out, y, bias, n, C, kind);
  CUDA_CHECK_LAUNCH("bias_gelu_forward_kernel");
}

template <class T>
void bias_gelu_backward(T* dy, T* dbias, const T* dout, const T* y, const T* bias, int64_t rows,
                        int64_t C, GeluKind kind) {
  if (rows == 0 || C == 0) return;
  const int64_t chunks = std::min(kMaxRowChunks, (rows + kRowsPerChunk - 1) / kRowsPerChunk);
  Tensor scratch;
  if (dbias) {
    int device = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    // Freed on return: the caching allocator hands the block out again only
    // to work queued later on the same stream.
    scratch = Tensor::empty({chunks, C}, dtype_of<T>::value, Device::cuda(device));
  }
  T* partial = dbias ? scratch.data<T>() : nullptr;
  const dim3 grid(unsigned((C + kTileCols - 1) / kTileCols), unsigned(chunks));
  bias_gelu_backward_kernel<T><<<grid, dim3(kTileCols, kTileRows), 0, current_stream()>>>(
      dy, partial, dout, y, bias, rows, C, kind);
  CUDA_CHECK_LAUNCH("bias_gelu_backward_kernel");
  if (!dbias) return;
  column_partials_finish_kernel<T><<<blocks_for(C, kThreads), kThreads, 0, current_stream()>>>(
      dbias, partial, chunks, C);
  CUDA_CHECK_LAUNCH("column_partials_finish_kernel");
}

template <class T>
void gelu_forward(T* out, const T* x, int64_t n, GeluKind kind) {
  if (n == 0) return;
  gelu_forward_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, current_stream()>>>(out, x, n,
                                                                                      kind);
  CUDA_CHECK_LAUNCH("gelu_forward_kernel");
}

template <class T>
void gelu_backward(T* dx, const T* dout, const T* x, int64_t n, GeluKind kind) {
  if (n == 0) return;
  gelu_backward_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, current_stream()>>>(
      dx, dout, x, n, kind);
  CUDA_CHECK_LAUNCH("gelu_backward_kernel");
}

template void gelu_forward<float>(float*, const float*, int64_t, GeluKind);
template void gelu_forward<double>(double*, const double*, int64_t, GeluKind);
template void gelu_backward<float>(float*, const float*, const float*, int64_t, GeluKind);
template void gelu_backward<double>(double*, const double*, const double*, int64_t, GeluKind);
template void bias_gelu_forward<float>(float*, const float*, const float*, int64_t, int64_t, GeluKind);
template void bias_gelu_forward<double>(double*, const double*, const double*, int64_t, int64_t,
                                        GeluKind);
template void bias_gelu_backward<float>(float*, float*, const float*, const float*, const float*,
                                        int64_t, int64_t, GeluKind);
template void bias_gelu_backward<double>(double*, double*, const double*, const double*, const double*,
                                         int64_t, int64_t, GeluKind);

}  // namespace gl::cuda
