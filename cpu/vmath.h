// Vectorisable double-precision exp, erfc and the normal CDF for the CPU
// kernels' hot loops (cross-entropy, GELU, attention softmax).
//
// Why: glibc's exp/erf are scalar calls, so a loop over 16M logits calling
// std::exp(double) runs one element at a time (about 10% of a training step
// of the tiny model went to exp and erf). These functions are plain
// arithmetic, always inlined, so `#pragma omp simd` loops vectorise them
// (8 doubles per AVX-512 vector) without -ffast-math.
//
// Accuracy (checked against glibc over dense grids in
// tests/autograd/test_cpu_fast_paths.cpp): exp_d within 1 ulp of glibc's exp;
// erfc_d (28 terms) within 1e-13 relative for 0 <= z < 26 (Numerical
// Recipes' Chebyshev fit, erfccheb, 1.2e-16 by construction; the tail is
// limited by rounding of -z^2), 1.1e-11 with the 17 terms the f32 kernels
// use. The f32 kernels evaluate in double and round once, so their results
// are the correctly rounded f32 values except where the exact value lies
// within ~1e-11 (relative) of a rounding boundary (1 ulp then).
//
// Special values: exp_d(NaN) = NaN, exp_d(+inf) = +inf, exp_d(-inf) = 0;
// results below the smallest normal are flushed towards 0 (2^-1076 scale).
// Reference: W. J. Cody & W. Waite, Software Manual for the Elementary
// Functions (1980) for the reduction; Press et al., Numerical Recipes 3rd
// ed. (2007) section 6.2.2 for erfc.
#pragma once
#include <cmath>
#include <cstdint>

#define GL_VMATH_INLINE inline __attribute__((always_inline))

namespace gl::cpu {

// 2^k for an integer-valued double k in [-2044, 2046], as the product of
// two normal powers of two 2^k1 2^k2 (k1 + k2 = k), so k below -1022 still
// scales correctly into the subnormal range or 0 (the product is the same
// double whichever split is used). The integer work is done on the bits of
// k1 + 1.5 * 2^52, whose low mantissa bits hold k1: a double to int64
// conversion has no vector instruction before AVX-512DQ, and with one the
// callers' loops stayed scalar on AVX2 machines.
GL_VMATH_INLINE double pow2_int(double k) {
  constexpr double kShift = 6755399441055744.0;  // 1.5 * 2^52
  const double k1 = (k * 0.5 + kShift) - kShift;  // k / 2 rounded to an integer
  const double k2 = k - k1;                       // exact
  const uint64_t shift = __builtin_bit_cast(uint64_t, kShift);
  // __builtin_bit_cast (std::bit_cast before C++20) keeps the bits in
  // registers; a memcpy through the stack stops GCC's vectoriser.
  const uint64_t b1 = (__builtin_bit_cast(uint64_t, k1 + kShift) - shift + 1023) << 52;
  const uint64_t b2 = (__builtin_bit_cast(uint64_t, k2 + kShift) - shift + 1023) << 52;
  return __builtin_bit_cast(double, b1) * __builtin_bit_cast(double, b2);
}

// exp(x) = 2^k exp(r), k = round(x / ln2), |r| <= ln2 / 2 (Cody-Waite split
// of ln2 so k ln2 is exact), exp(r) by its degree-13 Taylor polynomial
// (truncation error < (ln2/2)^14 / 14! ~ 4e-18).
GL_VMATH_INLINE double exp_d(double x) {
  // Clamping keeps k in pow2_int's range; NaN passes the comparisons
  // unchanged and is mapped to k = 0 so the integer conversion is defined.
  // The comparisons are made on x + 0.0, not x: when x is a widened float
  // (exp_d(double(f))) GCC narrows `x < -746.0` to a float comparison, and
  // a float mask selecting doubles defeats if-conversion, so the caller's
  // loop silently stayed scalar (attention's softmax ran 8x slower). x + 0.0
  // cannot be folded away (it maps -0.0 to +0.0, harmless here: exp(0) = 1).
  // The clamp's top arm computes 2^512 * 2^512 = inf from constants, which
  // GCC deems "could trap" under its default -ftrapping-math; without
  // AVX-512's masked arithmetic that arm is then not if-converted, so the
  // build compiles with -fno-trapping-math (CMakeLists.txt says why that
  // changes no value).
  const double x0 = x + 0.0;
  const double xc = x0 < -746.0 ? -746.0 : (x0 > 710.0 ? 710.0 : x0);
  // Round to nearest by adding and subtracting 1.5 * 2^52 (std::floor is
  // a library call GCC will not vectorise without -fno-trapping-math).
  constexpr double kShift = 6755399441055744.0;
  double k = (xc * 1.4426950408889634 + kShift) - kShift;
  k = k == k ? k : 0.0;
  double r = std::fma(-k, 6.93147180369123816490e-01, xc);  // ln2 high part (exact k * hi)
  r = std::fma(-k, 1.90821492927058770002e-10, r);          // ln2 low part
  double p = 1.0 / 6227020800.0;                            // 1/13!
  p = std::fma(p, r, 1.0 / 479001600.0);
  p = std::fma(p, r, 1.0 / 39916800.0);
  p = std::fma(p, r, 1.0 / 3628800.0);
  p = std::fma(p, r, 1.0 / 362880.0);
  p = std::fma(p, r, 1.0 / 40320.0);
  p = std::fma(p, r, 1.0 / 5040.0);
  p = std::fma(p, r, 1.0 / 720.0);
  p = std::fma(p, r, 1.0 / 120.0);
  p = std::fma(p, r, 1.0 / 24.0);
  p = std::fma(p, r, 1.0 / 6.0);
  p = std::fma(p, r, 0.5);
  p = std::fma(p, r, 1.0);
  p = std::fma(p, r, 1.0);
  return p * pow2_int(k);
}

// erfc(z) for z >= 0: Numerical Recipes' erfccheb,
//   erfc(z) = t exp(-z^2 + c_0 / 2 + sum_{j>=1} c_j T_j(y)),
//   t = 2 / (2 + z), y = 2t - 1 in (-1, 1],
// with the Chebyshev sum evaluated by Clenshaw's recurrence (ty = 2y).
// kTerms < 28 truncates the series: as |T_j(y)| <= 1, the relative error
// grows by at most the sum of the dropped |c_j| (1.1e-11 for kTerms = 17:
// far below f32's 6e-8 ulp, at 60% of the work of the full series).
template <int kTerms = 28>
GL_VMATH_INLINE double erfc_nonneg(double z) {
  static_assert(kTerms >= 2 && kTerms <= 28, "erfc_nonneg: 2 to 28 terms");
  constexpr double c[28] = {
      -1.3026537197817094,   6.4196979235649026e-1, 1.9476473204185836e-2,
      -9.561514786808631e-3, -9.46595344482036e-4,  3.66839497852761e-4,
      4.2523324806907e-5,    -2.0278578112534e-5,   -1.624290004647e-6,
      1.303655835580e-6,     1.5626441722e-8,       -8.5238095915e-8,
      6.529054439e-9,        5.059343495e-9,        -9.91364156e-10,
      -2.27365122e-10,       9.6467911e-11,         2.394038e-12,
      -6.886027e-12,         8.94487e-13,           3.13092e-13,
      -1.12708e-13,          3.81e-16,              7.106e-15,
      -1.523e-15,            -9.4e-17,              1.21e-16,
      -2.8e-17};
  const double t = 2.0 / (2.0 + z), ty = 4.0 * t - 2.0;
  double d = 0.0, dd = 0.0;
  // Fully unrolled, so the caller's loop has no inner control flow to
  // stop vectorisation.
#pragma GCC unroll 32
  for (int j = kTerms - 1; j > 0; --j) {
    const double tmp = d;
    d = ty * d - dd + c[j];
    dd = tmp;
  }
  return t * exp_d(-z * z + 0.5 * (c[0] + ty * d) - dd);
}

// erfc(z) for any z: erfc(-z) = 2 - erfc(z). Relative accuracy holds on
// both tails (no 1 - erf cancellation).
template <int kTerms = 28>
GL_VMATH_INLINE double erfc_d(double z) {
  const double e = erfc_nonneg<kTerms>(std::fabs(z));
  return z >= 0.0 ? e : 2.0 - e;
}

// The standard normal CDF Phi(x) = erfc(-x / sqrt(2)) / 2.
template <int kTerms = 28>
GL_VMATH_INLINE double normal_cdf_d(double x) {
  return 0.5 * erfc_d<kTerms>(-x * 0.70710678118654752440);
}

// Terms of the erfc series used where the result is rounded to f32.
constexpr int kErfcTermsF32 = 17;

}  // namespace gl::cpu

#undef GL_VMATH_INLINE
