// GELU CPU kernels (contracts in cpu/activation.h), evaluated in double.
// f64 tensors use libm (std::erf, std::tanh, std::exp): the reference the
// f64 gradient checks and value tests run on. f32 tensors use the
// vectorisable double functions of cpu/vmath.h (normal_cdf_d, exp_d), still
// evaluated in double and rounded once to f32, so they give the same f32
// values except within ~1e-11 (relative) of a rounding boundary; the scalar
// libm calls cost about 20 ns per element, which made GELU a tenth of a
// training step. The ERF form has a polynomial fast path for |x| <= 3
// (below), taken per 16-element chunk when every element of it is in range.
#include "cpu/activation.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "cpu/vmath.h"

namespace gl::cpu {

namespace {

constexpr int64_t kParallelMin = 1 << 15;
constexpr double kInvSqrt2 = 0.70710678118654752440;     // 1 / sqrt(2)
constexpr double kInvSqrt2Pi = 0.39894228040143267794;   // 1 / sqrt(2 pi): normal pdf at 0
constexpr double kSqrt2OverPi = 0.79788456080286535588;  // sqrt(2 / pi)
constexpr double kTanhCubic = 0.044715;                  // GPT-2's cubic coefficient

double gelu_value(double x, GeluKind kind) {
  if (kind == GeluKind::ERF) return 0.5 * x * (1.0 + std::erf(x * kInvSqrt2));
  const double u = kSqrt2OverPi * (x + kTanhCubic * x * x * x);
  return 0.5 * x * (1.0 + std::tanh(u));
}

// ERF:  d/dx [x Phi(x)] = Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
// TANH: with u = sqrt(2/pi) (x + 0.044715 x^3) and t = tanh(u),
//       d/dx [0.5 x (1 + t)] = 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx,
//       du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
double gelu_grad(double x, GeluKind kind) {
  if (kind == GeluKind::ERF)
    return 0.5 * (1.0 + std::erf(x * kInvSqrt2)) + x * kInvSqrt2Pi * std::exp(-0.5 * x * x);
  const double t = std::tanh(kSqrt2OverPi * (x + kTanhCubic * x * x * x));
  const double du = kSqrt2OverPi * (1.0 + 3.0 * kTanhCubic * x * x);
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du;
}

// The same two functions in vectorisable form (f32 path). The ERF form
// writes Phi(x) = erfc(-x / sqrt(2)) / 2, accurate on both tails. The TANH
// form uses 0.5 (1 + tanh(u)) = s = 1 / (1 + e), e = exp(-2u), and
// 1 - tanh(u)^2 = 4 s (1 - s) with 1 - s = e s, free of cancellation; the
// exponent is capped at 700 so e stays finite (s then underflows to ~0, as
// the exact value does) and e * s never becomes inf * 0.
inline double tanh_gate_exp(double x) {
  const double a = -2.0 * kSqrt2OverPi * (x + kTanhCubic * x * x * x);
  return exp_d(a < 700.0 ? a : 700.0);
}

// Forward and derivative of either form at x, for the simd loops below
// (instantiated per kind so each loop body holds one form only).
template <GeluKind K>
inline double gelu_value_simd(double x) {
  if constexpr (K == GeluKind::ERF) return x * normal_cdf_d<kErfcTermsF32>(x);
  else return x / (1.0 + tanh_gate_exp(x));
}

template <GeluKind K>
inline double gelu_grad_simd(double x) {
  if constexpr (K == GeluKind::ERF) {
    return normal_cdf_d<kErfcTermsF32>(x) + x * kInvSqrt2Pi * exp_d(-0.5 * x * x);
  } else {
    const double e = tanh_gate_exp(x), s = 1.0 / (1.0 + e);
    const double du = kSqrt2OverPi * (1.0 + 3.0 * kTanhCubic * x * x);
    return s + 2.0 * x * s * (e * s) * du;
  }
}

// Fast path of the ERF form for |x| <= 3, where nearly all activations lie:
//   Phi(x) = 1/2 + x h(x^2),  d/dx [x Phi(x)] = 1/2 + x q(x^2),
// h and q polynomials in y = 2 x^2 / 9 - 1 (coefficients and their
// derivation: tools/fit_gelu_poly.py, 50-digit Chebyshev interpolation).
// Relative error of h 8e-14 and of q 1e-14, so Phi is within 3e-11
// (relative, at x = -3 where Phi = 0.00135) and the f32 results are the
// correctly rounded values as closely as the erfc path's. 15 or 17
// multiply-adds replace the erfc series, its division and an exp: the
// forward GELU of Pythia-160m took 8% of the forward pass before.
constexpr double kH[15] = {
    0.22771316680397166,     -0.09283247990258314,    0.04597224348971894,
    -0.020571115571915526,   0.008021489509752297,    -0.002729134169982974,
    0.000817878821691124,    -0.00021822822148530763, 5.2368296790510595e-05,
    -1.1404791221972758e-05, 2.2712648209110204e-06,  -4.151314240143569e-07,
    7.05699930466613e-08,    -1.2084026584216655e-08, 1.7720375268895074e-09};
constexpr double kQ[17] = {
    0.2697613738032245,      -0.1874409456506456,    0.15240676745654455,
    -0.10039700855697928,    0.052923554309552145,   -0.022935063217270832,
    0.008395102241993024,    -0.0026537648915502575, 0.000737362898884994,
    -0.00018265192159546366, 4.0802014340451915e-05, -8.298682940281064e-06,
    1.5486034025005437e-06,  -2.660281145434701e-07, 4.26453896864627e-08,
    -6.918303812463097e-09,  9.621312213204523e-10};
constexpr float kPolyRange = 3.0f;

template <int N>
inline double horner(const double (&a)[N], double y) {
  double p = a[N - 1];
#pragma GCC unroll 20
  for (int k = N - 2; k >= 0; --k) p = std::fma(p, y, a[k]);
  return p;
}

inline double poly_y(double x) { return x * x * (2.0 / 9.0) - 1.0; }

// 16 floats: two 8-double vectors, and a chunk of standard-normal inputs is
// entirely in range 96% of the time. +-inf fails the range test and takes
// the general path; a NaN gives NaN on either path.
constexpr int64_t kChunk = 16;

inline bool chunk_in_poly_range(const float* x) {
  float m = 0.f;
#pragma omp simd reduction(max : m)
  for (int64_t i = 0; i < kChunk; ++i) m = std::max(m, std::fabs(x[i]));
  return m <= kPolyRange;
}

// Forward over [0, n): per chunk, the polynomial when it applies, else the
// general vectorised form; the tail (< 16 elements) takes the general form.
template <GeluKind K>
void gelu_forward_f32(float* out, const float* x, int64_t n) {
  if constexpr (K == GeluKind::ERF) {
    const int64_t chunks = n / kChunk;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
    for (int64_t c = 0; c < chunks; ++c) {
      const float* xc = x + c * kChunk;
      float* oc = out + c * kChunk;
      if (chunk_in_poly_range(xc)) {
#pragma omp simd
        for (int64_t i = 0; i < kChunk; ++i) {
          const double v = double(xc[i]);
          oc[i] = float(v * (0.5 + v * horner(kH, poly_y(v))));
        }
      } else {
#pragma omp simd
        for (int64_t i = 0; i < kChunk; ++i) oc[i] = float(gelu_value_simd<K>(double(xc[i])));
      }
    }
    for (int64_t i = chunks * kChunk; i < n; ++i) out[i] = float(gelu_value_simd<K>(double(x[i])));
  } else {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) out[i] = float(gelu_value_simd<K>(double(x[i])));
  }
}

template <GeluKind K>
void gelu_backward_f32(float* dx, const float* dout, const float* x, int64_t n) {
  if constexpr (K == GeluKind::ERF) {
    const int64_t chunks = n / kChunk;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t o = c * kChunk;
      if (chunk_in_poly_range(x + o)) {
#pragma omp simd
        for (int64_t i = o; i < o + kChunk; ++i) {
          const double v = double(x[i]);
          dx[i] = float(double(dout[i]) * (0.5 + v * horner(kQ, poly_y(v))));
        }
      } else {
#pragma omp simd
        for (int64_t i = o; i < o + kChunk; ++i)
          dx[i] = float(double(dout[i]) * gelu_grad_simd<K>(double(x[i])));
      }
    }
    for (int64_t i = chunks * kChunk; i < n; ++i)
      dx[i] = float(double(dout[i]) * gelu_grad_simd<K>(double(x[i])));
  } else {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) dx[i] = float(double(dout[i]) * gelu_grad_simd<K>(double(x[i])));
  }
}

}  // namespace

template <class T>
void gelu_forward(T* out, const T* x, int64_t n, GeluKind kind) {
  if constexpr (std::is_same_v<T, float>) {
    if (kind == GeluKind::ERF) gelu_forward_f32<GeluKind::ERF>(out, x, n);
    else gelu_forward_f32<GeluKind::TANH>(out, x, n);
  } else {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) out[i] = T(gelu_value(double(x[i]), kind));
  }
}

template <class T>
void gelu_backward(T* dx, const T* dout, const T* x, int64_t n, GeluKind kind) {
  if constexpr (std::is_same_v<T, float>) {
    if (kind == GeluKind::ERF) gelu_backward_f32<GeluKind::ERF>(dx, dout, x, n);
    else gelu_backward_f32<GeluKind::TANH>(dx, dout, x, n);
  } else {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) dx[i] = T(double(dout[i]) * gelu_grad(double(x[i]), kind));
  }
}

// Row by row: y + bias into the output row, then the GELU kernels above in
// place on it (each writes element i only after reading element i). Rows
// are independent; inside a parallel region the kernels' own parallel
// loops run on the calling thread.
template <class T>
void bias_gelu_forward(T* out, const T* y, const T* bias, int64_t rows, int64_t C, GeluKind kind) {
#pragma omp parallel for schedule(static) if (rows * C > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    T* o = out + r * C;
    const T* yr = y + r * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) o[c] = yr[c] + bias[c];
    gelu_forward<T>(o, o, C, kind);
  }
}

template <class T>
void bias_gelu_backward(T* dy, T* dbias, const T* dout, const T* y, const T* bias, int64_t rows,
                        int64_t C, GeluKind kind) {
#pragma omp parallel for schedule(static) if (rows * C > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    T* d = dy + r * C;
    const T* yr = y + r * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) d[c] = yr[c] + bias[c];
    gelu_backward<T>(d, dout + r * C, d, C, kind);
  }
  if (!dbias) return;
  // Column sums, parallel over column chunks, each chunk's rows in order:
  // the result does not depend on the thread count.
  constexpr int64_t kCols = 64;
#pragma omp parallel for schedule(static) if (rows * C > kParallelMin)
  for (int64_t c0 = 0; c0 < C; c0 += kCols) {
    const int64_t width = std::min(kCols, C - c0);
    double acc[kCols] = {};
    for (int64_t r = 0; r < rows; ++r) {
      const T* d = dy + r * C + c0;
      for (int64_t j = 0; j < width; ++j) acc[j] += double(d[j]);
    }
    for (int64_t j = 0; j < width; ++j) dbias[c0 + j] += T(acc[j]);
  }
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

}  // namespace gl::cpu
