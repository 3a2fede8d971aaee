// GELU CPU kernels (contracts in cpu/activation.h), evaluated in double.
// f64 tensors use libm (std::erf, std::tanh, std::exp): the reference the
// f64 gradient checks and value tests run on. f32 tensors use the
// vectorisable double functions of cpu/vmath.h (normal_cdf_d, exp_d), still
// evaluated in double and rounded once to f32, so they give the same f32
// values except within ~1e-15 of a rounding boundary; the scalar libm calls
// cost about 20 ns per element, which made GELU a tenth of a training step.
#include "cpu/activation.h"

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

template <GeluKind K>
void gelu_forward_f32(float* out, const float* x, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) out[i] = float(gelu_value_simd<K>(double(x[i])));
}

template <GeluKind K>
void gelu_backward_f32(float* dx, const float* dout, const float* x, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) dx[i] = float(double(dout[i]) * gelu_grad_simd<K>(double(x[i])));
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

template void gelu_forward<float>(float*, const float*, int64_t, GeluKind);
template void gelu_forward<double>(double*, const double*, int64_t, GeluKind);
template void gelu_backward<float>(float*, const float*, const float*, int64_t, GeluKind);
template void gelu_backward<double>(double*, const double*, const double*, int64_t, GeluKind);

}  // namespace gl::cpu
