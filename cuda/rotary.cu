// Rotary embedding (CUDA): see cpu/rotary.h. One thread per output element;
// each computes its angle, cos and sin in double (as the CPU table does) and
// casts to T, so both devices use the same rounded cos/sin values up to the
// last bit of the double math library.
#include <cmath>

#include "cuda/common.cuh"
#include "cuda/rotary.h"

namespace gl::cuda {

namespace {

constexpr int kThreads = 256;

// sign = +1 rotates by theta (forward), -1 by -theta (backward).
template <class T>
__global__ void rotary_kernel(T* out, const T* x, int64_t rows, int64_t seq_len, int64_t HS,
                              int64_t rotary_dim, double base, int64_t position_offset,
                              double sign) {
  const int64_t n = rows * HS, half = rotary_dim / 2;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t d = e % HS, t = (e / HS) % seq_len;
    if (d >= rotary_dim) {
      out[e] = x[e];
      continue;
    }
    const int64_t i = d < half ? d : d - half;
    // Angles in T, as the CPU kernel and Hugging Face compute them.
    const T inv_freq = T(1) / pow(T(base), T(2 * i) / T(rotary_dim));
    const T theta = T(position_offset + t) * inv_freq;
    const T c = cos(theta), s = T(sign) * sin(theta);
    // Same expressions (and operand order) as the CPU kernel.
    if (d < half) out[e] = x[e] * c - x[e + half] * s;
    else out[e] = x[e] * c + x[e - half] * s;
  }
}

template <class T>
void rotary_launch(T* out, const T* x, int64_t BH, int64_t seq_len, int64_t HS,
                   int64_t rotary_dim, double base, int64_t position_offset, double sign) {
  const int64_t n = BH * seq_len * HS;
  if (n == 0) return;
  rotary_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, current_stream()>>>(
      out, x, BH * seq_len, seq_len, HS, rotary_dim, base, position_offset, sign);
  CUDA_CHECK_LAUNCH("rotary_kernel");
}

}  // namespace

template <class T>
void rotary_forward(T* out, const T* x, int64_t BH, int64_t seq_len, int64_t HS,
                    int64_t rotary_dim, double base, int64_t position_offset) {
  rotary_launch(out, x, BH, seq_len, HS, rotary_dim, base, position_offset, 1.0);
}

template <class T>
void rotary_backward(T* dx, const T* dout, int64_t BH, int64_t seq_len, int64_t HS,
                     int64_t rotary_dim, double base, int64_t position_offset) {
  rotary_launch(dx, dout, BH, seq_len, HS, rotary_dim, base, position_offset, -1.0);
}

#define GL_INSTANTIATE(T)                                                                 \
  template void rotary_forward<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, double, \
                                  int64_t);                                               \
  template void rotary_backward<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, double, \
                                   int64_t);
GL_INSTANTIATE(float)
GL_INSTANTIATE(double)
#undef GL_INSTANTIATE

}  // namespace gl::cuda
