// The scalar arithmetic of fake quantization, shared verbatim by the CPU
// kernels (cpu/fake_quant.cpp) and the CUDA kernels (cuda/fake_quant.cu), so
// both devices round, clamp and dequantize bit for bit alike.
//
// For v = x / s (x's dtype T, IEEE division on both devices) and a zero
// point z:   r = round(v)   level = r + z   q = clamp(level, qmin, qmax)
//            x_hat = (q - z) * s
// round() is one of quant/types.h's QuantRounding modes, written out with
// floor/fabs/copysign only, so the result never depends on the host's
// floating-point rounding mode (std::nearbyint would) and no expression has
// the a * b + c shape that nvcc contracts into an FMA by default.
//
// The STE region is decided on the ROUNDED level, as PyTorch's
// fake_quantize_per_tensor_affine and _fake_quantize_learnable_* backwards
// do: an element passes gradient iff the clamp did not change it
// (qmin <= level <= qmax). With an absmax scale, fl(a / fl(a / qmax)) lands
// above qmax by an ulp for ~10% of rows in f32, so a test on the unrounded
// v would wrongly zero the gradient of the largest element; on the rounded
// level it never does, and CLIPPED equals PLAIN whenever nothing is clipped.
#pragma once
#include <math.h>

#include <cstdint>

#include "core/philox.h"
#include "quant/types.h"

namespace gl::fq {

// Overloads instead of std:: so the same call compiles in device code.
GL_HOST_DEVICE float fq_floor(float v) { return floorf(v); }
GL_HOST_DEVICE double fq_floor(double v) { return floor(v); }
GL_HOST_DEVICE float fq_abs(float v) { return fabsf(v); }
GL_HOST_DEVICE double fq_abs(double v) { return fabs(v); }
GL_HOST_DEVICE float fq_copysign(float m, float s) { return copysignf(m, s); }
GL_HOST_DEVICE double fq_copysign(double m, double s) { return copysign(m, s); }

// Round half to even / half away from zero on |v|, then restore the sign
// (both modes are odd functions). d = a - floor(a) is exact for a >= 0
// (Sterbenz for a >= 1, floor = 0 below), so the tie test d == 0.5 is exact;
// working on v < 0 directly would not be (v + 1 rounds for v in (-1, 0)).
template <class T>
GL_HOST_DEVICE T round_half_even(T v) {
  const T a = fq_abs(v), f = fq_floor(a), d = a - f;
  const bool odd = fq_floor(f * T(0.5)) * T(2) != f;
  const T r = (d > T(0.5) || (d == T(0.5) && odd)) ? f + T(1) : f;
  return fq_copysign(r, v);
}

template <class T>
GL_HOST_DEVICE T round_half_away(T v) {
  const T a = fq_abs(v), f = fq_floor(a);
  return fq_copysign(a - f >= T(0.5) ? f + T(1) : f, v);
}

// u: the element's Philox uniform in [0, 1), read only by STOCHASTIC.
// HALF_UP and STOCHASTIC add in T before flooring, as ggml's (int)(v + 8.5)
// and floor(v + u) do: the sum's rounding is part of the definition.
template <class T>
GL_HOST_DEVICE T round_by(QuantRounding mode, T v, float u) {
  switch (mode) {
    case QuantRounding::NEAREST_EVEN: return round_half_even(v);
    case QuantRounding::NEAREST_AWAY: return round_half_away(v);
    case QuantRounding::HALF_UP: return fq_floor(v + T(0.5));
    case QuantRounding::STOCHASTIC: return fq_floor(v + T(u));
  }
  return v;
}

// The uniform for element i (index into the contiguous x) of a draw at
// Philox block `offset`; 0 unless the mode is STOCHASTIC (saves the hash).
GL_HOST_DEVICE float stochastic_u(QuantRounding mode, uint64_t seed, uint64_t offset,
                                  int64_t i) {
  return mode == QuantRounding::STOCHASTIC ? philox_uniform(seed, offset, uint64_t(i)) : 0.0f;
}

// NaN stays NaN (both comparisons false), so a NaN input yields a NaN x_hat.
template <class T>
GL_HOST_DEVICE T clamp_level(T level, T qmin, T qmax) {
  return level < qmin ? qmin : (level > qmax ? qmax : level);
}

template <class T>
GL_HOST_DEVICE bool level_inside(T level, T qmin, T qmax) {
  return level >= qmin && level <= qmax;
}

// d x_hat / d s of the straight-through surrogate (LSQ, Esser et al. 2020,
// arXiv 1902.08153 eq. 3, with the region on the rounded level as above):
//   inside:  x_hat = r * s with r = round(x / s) read as x / s + const, so
//            d/ds (r s) = r + s * d(x/s)/ds = r - x/s = r - v
//   below:   x_hat = (qmin - z) s  ->  qmin - z
//   above:   x_hat = (qmax - z) s  ->  qmax - z
// A NaN level returns NaN rather than a bound.
template <class T>
GL_HOST_DEVICE T lsq_dxhat_dscale(T v, T r, T z, T qmin, T qmax) {
  const T level = r + z;
  if (level_inside(level, qmin, qmax)) return r - v;
  if (level < qmin) return qmin - z;
  return level > qmax ? qmax - z : level;
}

// Dynamic per-token (per-row) parameters from the row's statistics.
// Symmetric: s = absmax / qmax (levels [-qmax, qmax]). Asymmetric (levels
// [qmin, qmax], PyTorch MinMaxObserver's rule): the range is widened to
// contain 0 so that 0 is exact, s = (max - min) / (qmax - qmin),
// z = qmin - round_half_even(min / s). An all-zero row (s would be 0, or a
// denormal quotient would flush to 0) gets s = 1, which maps it to 0 exactly.
template <class T>
GL_HOST_DEVICE void per_token_params(T* scale, T* zero, T row_min, T row_max, bool symmetric,
                                     T qmin, T qmax) {
  if (symmetric) {
    const T a = fq_abs(row_min) > fq_abs(row_max) ? fq_abs(row_min) : fq_abs(row_max);
    T s = a / qmax;
    if (!(s > T(0))) s = a != a ? a : T(1);  // keep NaN, replace 0
    *scale = s;
    return;
  }
  const T lo = row_min < T(0) ? row_min : T(0), hi = row_max > T(0) ? row_max : T(0);
  T s = (hi - lo) / (qmax - qmin);
  if (!(s > T(0))) s = s != s ? s : T(1);
  *scale = s;
  *zero = qmin - round_half_even(lo / s);
}

}  // namespace gl::fq
