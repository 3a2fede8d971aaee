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

// One thread per output element of rows (b, h, t) in the strided layouts
// of cpu/rotary.h (RotaryRows). sign = +1 rotates by theta (forward), -1
// by -theta (backward).
template <class T>
__global__ void rotary_kernel(T* out, cpu::RotaryRows orow, const T* x, cpu::RotaryRows xrow, int64_t NH,
                              int64_t rows, int64_t seq_len, int64_t HS, int64_t rotary_dim,
                              const InvFreq<T> inv_freq, int64_t position_offset, double sign,
                              bool accumulate) {
  const int64_t n = rows * HS, half = rotary_dim / 2;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t d = e % HS, r = e / HS;
    const int64_t t = r % seq_len, h = (r / seq_len) % NH, b = r / (seq_len * NH);
    const T* xr = x + b * xrow.sb + h * xrow.sh + t * xrow.st;
    T* o = out + b * orow.sb + h * orow.sh + t * orow.st;
    T y;
    if (d >= rotary_dim) {
      y = xr[d];
    } else {
      const int64_t i = d < half ? d : d - half;
      // Angles in T, as the CPU kernel and Hugging Face compute them.
      const T theta = T(position_offset + t) * inv_freq.v[i];
      const T c = T(cos(double(theta))), s = T(sign) * T(sin(double(theta)));
      // Same expressions (and operand order) as the CPU kernel.
      y = d < half ? xr[d] * c - xr[d + half] * s : xr[d] * c + xr[d - half] * s;
    }
    o[d] = accumulate ? o[d] + y : y;
  }
}

template <class T>
void rotary_launch(T* out, cpu::RotaryRows orow, const T* x, cpu::RotaryRows xrow, int64_t B, int64_t NH,
                   int64_t seq_len, int64_t HS, int64_t rotary_dim, double base, int64_t position_offset,
                   double sign, bool accumulate) {
  const int64_t n = B * NH * seq_len * HS;
  if (n == 0) return;
  GL_CHECK(rotary_dim / 2 <= kMaxHalf, "rotary: rotary_dim ", rotary_dim,
           " exceeds the CUDA kernel's limit of ", 2 * kMaxHalf);
  InvFreq<T> inv_freq{};
  for (int64_t i = 0; i < rotary_dim / 2; ++i)  // the CPU kernel's expression
    inv_freq.v[i] = T(1) / std::pow(T(base), T(2 * i) / T(rotary_dim));
  rotary_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, current_stream()>>>(
      out, orow, x, xrow, NH, B * NH * seq_len, seq_len, HS, rotary_dim, inv_freq, position_offset, sign,
      accumulate);
  CUDA_CHECK_LAUNCH("rotary_kernel");
}

template <class T>
void rotary_launch(T* out, const T* x, int64_t BH, int64_t seq_len, int64_t HS,
                   int64_t rotary_dim, double base, int64_t position_offset, double sign) {
  const cpu::RotaryRows rows{seq_len * HS, 0, HS};
  rotary_launch(out, rows, x, rows, BH, 1, seq_len, HS, rotary_dim, base, position_offset, sign, false);
}

}  // namespace

template <class T>
void rotary_strided(T* out, cpu::RotaryRows out_rows, const T* x, cpu::RotaryRows x_rows, int64_t B,
                    int64_t NH, int64_t seq_len, int64_t HS, int64_t rotary_dim, double base,
                    int64_t position_offset, bool inverse, bool accumulate) {
  rotary_launch(out, out_rows, x, x_rows, B, NH, seq_len, HS, rotary_dim, base, position_offset,
                inverse ? -1.0 : 1.0, accumulate);
}

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
                                   int64_t);                                              \
  template void rotary_strided<T>(T*, cpu::RotaryRows, const T*, cpu::RotaryRows, int64_t, int64_t,  \
                                  int64_t, int64_t, int64_t, double, int64_t, bool, bool);
GL_INSTANTIATE(float)
GL_INSTANTIATE(double)
#undef GL_INSTANTIATE

}  // namespace gl::cuda
