// GELU CUDA kernels (contracts in cpu/activation.h, derivative derivations
// in cpu/activation.cpp): grid-stride elementwise loops evaluated in T.
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

}  // namespace

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

}  // namespace gl::cuda
