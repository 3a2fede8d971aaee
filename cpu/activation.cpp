// GELU CPU kernels (contracts in cpu/activation.h), evaluated in double.
#include "cpu/activation.h"

#include <cmath>

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

}  // namespace

template <class T>
void gelu_forward(T* out, const T* x, int64_t n, GeluKind kind) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) out[i] = T(gelu_value(double(x[i]), kind));
}

template <class T>
void gelu_backward(T* dx, const T* dout, const T* x, int64_t n, GeluKind kind) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) dx[i] = T(double(dout[i]) * gelu_grad(double(x[i]), kind));
}

template void gelu_forward<float>(float*, const float*, int64_t, GeluKind);
template void gelu_forward<double>(double*, const double*, int64_t, GeluKind);
template void gelu_backward<float>(float*, const float*, const float*, int64_t, GeluKind);
template void gelu_backward<double>(double*, const double*, const double*, int64_t, GeluKind);

}  // namespace gl::cpu
