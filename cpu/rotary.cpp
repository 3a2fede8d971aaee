// Rotary embedding, CPU reference: see cpu/rotary.h. The cos/sin table for
// the T positions of this call is built once; rows then only multiply and
// add. The angles are computed in the op's dtype exactly as Hugging Face's
// GPTNeoXRotaryEmbedding does in f32 (inv_freq = 1 / base^(2i/d) with a
// float pow, theta = position * inv_freq rounded to float, then cos/sin of
// that float): with f64 angles, position 2047 would be off by about 1e-4
// rad from the reference model. f64 tensors get f64 angles.
#include "cpu/rotary.h"

#include <cmath>
#include <vector>

namespace gl::cpu {

namespace {

// The cos/sin table of one call's positions. Every layer's q and k, forward
// and backward, asks for the same table (24 to 48 times a Pythia-160m step),
// and its libm cos/sin calls, serial, were half of rotary's time; the last
// table is kept per thread and reused when its key matches.
template <class T>
struct RotaryTable {
  int64_t seq_len = -1, rotary_dim = -1, position_offset = -1;
  double base = 0;
  std::vector<T> cos_t, sin_t;  // [seq_len, rotary_dim / 2]
};

template <class T>
const RotaryTable<T>& rotary_table(int64_t seq_len, int64_t rotary_dim, double base,
                                   int64_t position_offset) {
  static thread_local RotaryTable<T> tab;
  if (tab.seq_len == seq_len && tab.rotary_dim == rotary_dim && tab.base == base &&
      tab.position_offset == position_offset)
    return tab;
  const int64_t half = rotary_dim / 2;
  tab.cos_t.assign(size_t(seq_len * half), T(0));
  tab.sin_t.assign(size_t(seq_len * half), T(0));
  for (int64_t i = 0; i < half; ++i) {
    const T inv_freq = T(1) / std::pow(T(base), T(2 * i) / T(rotary_dim));
    for (int64_t t = 0; t < seq_len; ++t) {
      const T theta = T(position_offset + t) * inv_freq;
      tab.cos_t[size_t(t * half + i)] = std::cos(theta);
      tab.sin_t[size_t(t * half + i)] = std::sin(theta);
    }
  }
  tab.seq_len = seq_len, tab.rotary_dim = rotary_dim, tab.base = base;
  tab.position_offset = position_offset;
  return tab;
}

}  // namespace

// sign = +1 rotates by theta (forward), -1 by -theta (backward).
template <class T>
static void rotary_apply(T* out, const T* x, int64_t BH, int64_t seq_len, int64_t HS,
                         int64_t rotary_dim, double base, int64_t position_offset, double sign) {
  const int64_t half = rotary_dim / 2;
  const RotaryTable<T>& tab = rotary_table<T>(seq_len, rotary_dim, base, position_offset);
  const T sg = T(sign);
  const int64_t rows = BH * seq_len;
#pragma omp parallel for schedule(static) if (rows * HS > (1 << 15))
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = r % seq_len;
    const T* xr = x + r * HS;
    T* o = out + r * HS;
    const T* c = tab.cos_t.data() + t * half;
    const T* s = tab.sin_t.data() + t * half;
    for (int64_t i = 0; i < half; ++i) {
      const T x1 = xr[i], x2 = xr[i + half], si = sg * s[i];  // exact: sg is +-1
      o[i] = x1 * c[i] - x2 * si;
      o[i + half] = x2 * c[i] + x1 * si;
    }
    for (int64_t d = rotary_dim; d < HS; ++d) o[d] = xr[d];
  }
}

template <class T>
void rotary_forward(T* out, const T* x, int64_t BH, int64_t seq_len, int64_t HS,
                    int64_t rotary_dim, double base, int64_t position_offset) {
  rotary_apply(out, x, BH, seq_len, HS, rotary_dim, base, position_offset, 1.0);
}

// The rotation is orthogonal, so its Jacobian transpose is its inverse:
// dx_i = dout_i cos + dout_{i+half} sin, dx_{i+half} = dout_{i+half} cos - dout_i sin.
template <class T>
void rotary_backward(T* dx, const T* dout, int64_t BH, int64_t seq_len, int64_t HS,
                     int64_t rotary_dim, double base, int64_t position_offset) {
  rotary_apply(dx, dout, BH, seq_len, HS, rotary_dim, base, position_offset, -1.0);
}

#define GL_INSTANTIATE(T)                                                                 \
  template void rotary_forward<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, double, \
                                  int64_t);                                               \
  template void rotary_backward<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, double, \
                                   int64_t);
GL_INSTANTIATE(float)
GL_INSTANTIATE(double)
#undef GL_INSTANTIATE

}  // namespace gl::cpu
