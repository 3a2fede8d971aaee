// Rotary embedding (CUDA): see cpu/rotary.h. One thread per output element.
// The inverse frequencies come from the host, computed with the CPU
// kernel's own expression (CUDA's powf differs from glibc's in the last
// bit, and at position 130 one ulp of inv_freq moves the angle by ~1e-5
// rad). theta = position * inv_freq is then one correctly rounded multiply
// on both devices, and cos/sin are taken in double and rounded to T, which
// matches glibc's correctly rounded cosf/sinf.
#include <cmath>

#include "cuda/common.cuh"
#include "cuda/rotary.h"

namespace gl::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxHalf = 256;  // rotary_dim <= 512

template <class T>
struct InvFreq {
  T v[kMaxHalf];
};

// sign = +1 rotates by theta (forward), -1 by -theta (backward).
template <class T>
__global__ void rotary_kernel(T* out, const T* x, int64_t rows, int64_t seq_len, int64_t HS,
                              int64_t rotary_dim, const InvFreq<T> inv_freq,
                              int64_t position_offset, double sign) {
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
    const T theta = T(position_offset + t) * inv_freq.v[i];
    const T c = T(cos(double(theta))), s = T(sign) * T(sin(double(theta)));
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
  GL_CHECK(rotary_dim / 2 <= kMaxHalf, "rotary: rotary_dim ", rotary_dim,
           " exceeds the CUDA kernel's limit of ", 2 * kMaxHalf);
  InvFreq<T> inv_freq{};
  for (int64_t i = 0; i < rotary_dim / 2; ++i)  // the CPU kernel's expression
    inv_freq.v[i] = T(1) / std::pow(T(base), T(2 * i) / T(rotary_dim));
  rotary_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, current_stream()>>>(
      out, x, BH * seq_len, seq_len, HS, rotary_dim, inv_freq, position_offset, sign);
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
