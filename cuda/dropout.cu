// Inverted dropout CUDA kernels (contracts in cpu/dropout.h): a grid-stride
// loop in which every thread computes its element's Philox draw directly
// from (seed, offset, i), so the mask matches the CPU's element for element.
#include "core/philox.h"
#include "cuda/common.cuh"
#include "cuda/dropout.h"

namespace gl::cuda {

namespace {

constexpr int kThreads = 256;

// out = mask * scale * in; the forward (in = x) and the backward (in = dout).
template <class T>
__global__ void dropout_apply_kernel(T* out, const T* in, int64_t n, double p, T scale,
                                     uint64_t seed, uint64_t offset) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const bool keep = double(philox_uniform(seed, offset, uint64_t(i))) >= p;
    out[i] = keep ? in[i] * scale : T(0);
  }
}

template <class T>
void dropout_apply(T* out, const T* in, int64_t n, double p, uint64_t seed, uint64_t offset) {
  if (n == 0) return;
  // Rounded to T on the host, exactly as the CPU kernel does.
  const T scale = T(1.0 / (1.0 - p));
  dropout_apply_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, current_stream()>>>(
      out, in, n, p, scale, seed, offset);
  CUDA_CHECK_LAUNCH("dropout_apply_kernel");
}

}  // namespace

template <class T>
void dropout_forward(T* out, const T* x, int64_t n, double p, uint64_t seed, uint64_t offset) {
  dropout_apply(out, x, n, p, seed, offset);
}

template <class T>
void dropout_backward(T* dx, const T* dout, int64_t n, double p, uint64_t seed,
                      uint64_t offset) {
  dropout_apply(dx, dout, n, p, seed, offset);
}

template void dropout_forward<float>(float*, const float*, int64_t, double, uint64_t, uint64_t);
template void dropout_forward<double>(double*, const double*, int64_t, double, uint64_t,
                                      uint64_t);
template void dropout_backward<float>(float*, const float*, int64_t, double, uint64_t, uint64_t);
template void dropout_backward<double>(double*, const double*, int64_t, double, uint64_t,
                                       uint64_t);

}  // namespace gl::cuda
