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

template <class T>
void rotary_strided(T* out, RotaryRows out_rows, const T* x, RotaryRows x_rows, int64_t B, int64_t NH,
                    int64_t seq_len, int64_t HS, int64_t rotary_dim, double base, int64_t position_offset,
                    bool inverse, bool accumulate) {
  const int64_t half = rotary_dim / 2;
  const RotaryTable<T>& tab = rotary_table<T>(seq_len, rotary_dim, base, position_offset);
  const T sg = inverse ? T(-1) : T(1);
  const int64_t rows = B * NH * seq_len;
#pragma omp parallel for schedule(static) if (rows * HS > (1 << 15))
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = r % seq_len, h = (r / seq_len) % NH, b = r / (seq_len * NH);
    const T* xr = x + b * x_rows.sb + h * x_rows.sh + t * x_rows.st;
    T* o = out + b * out_rows.sb + h * out_rows.sh + t * out_rows.st;
    const T* c = tab.cos_t.data() + t * half;
    const T* s = tab.sin_t.data() + t * half;
    for (int64_t i = 0; i < half; ++i) {
      const T x1 = xr[i], x2 = xr[i + half], si = sg * s[i];  // exact: sg is +-1
      const T y1 = x1 * c[i] - x2 * si, y2 = x2 * c[i] + x1 * si;
      o[i] = accumulate ? o[i] + y1 : y1;
      o[i + half] = accumulate ? o[i + half] + y2 : y2;
    }
    for (int64_t d = rotary_dim; d < HS; ++d) o[d] = accumulate ? o[d] + xr[d] : xr[d];
  }
}

// sign = +1 rotates by theta (forward), -1 by -theta (backward).
template <class T>
static void rotary_apply(T* out, const T* x, int64_t BH, int64_t seq_len, int64_t HS,
                         int64_t rotary_dim, double base, int64_t position_offset, double sign) {
  const RotaryRows rows{seq_len * HS, 0, HS};
  rotary_strided(out, rows, x, rows, BH, 1, seq_len, HS, rotary_dim, base, position_offset, sign < 0,
                 false);
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
                                   int64_t);                                              \
  template void rotary_strided<T>(T*, RotaryRows, const T*, RotaryRows, int64_t, int64_t, int64_t, \
                                  int64_t, int64_t, double, int64_t, bool, bool);
GL_INSTANTIATE(float)
GL_INSTANTIATE(double)
#undef GL_INSTANTIATE

}  // namespace gl::cpu
