// Cross-entropy, CPU reference: see cpu/cross_entropy.h. Row sums in double.
// exp is cpu/vmath.h's exp_d (double, vectorised): a row of V = 8192 to
// 50304 logits is one simd loop instead of V scalar libm calls, which made
// the loss over vocab 8192 a visible part of a training step.
#include "cpu/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "cpu/vmath.h"

namespace gl::cpu {

namespace {

// dx[v] = (exp(x[v] - L) - [v == y]) * g for one row. dx may be x: the
// target's logit is read before the row is overwritten, and each other
// element is read before it is written.
template <class T>
void grad_row(T* dx, const T* x, int64_t V, int64_t y, double L, double g) {
  const double x_y = double(x[y]);
#pragma omp simd
  for (int64_t v = 0; v < V; ++v) dx[v] = T(exp_d(double(x[v]) - L) * g);
  dx[y] = T((exp_d(x_y - L) - 1.0) * g);
}

}  // namespace

template <class T, class I>
void cross_entropy_forward(T* losses, T* lse, int64_t* status, const T* logits, const I* targets,
                           int64_t N, int64_t V, int64_t ignore_index, T* grad) {
  // Validate and count first (a cheap serial scan of N ints).
  int64_t valid = 0;
  for (int64_t n = 0; n < N; ++n) {
    const int64_t y = int64_t(targets[n]);
    if (y == ignore_index) continue;
    if (y < 0 || y >= V) {
      status[0] = std::min(status[0], n);
      return;
    }
    ++valid;
  }
  status[1] += valid;
  const double g = valid > 0 ? 1.0 / double(valid) : 0.0;  // d mean / d losses[n]
#pragma omp parallel for schedule(static) if (N * V > (1 << 15))
  for (int64_t n = 0; n < N; ++n) {
    const int64_t y = int64_t(targets[n]);
    if (y == ignore_index) {  // no loss and no gradient: skip the row
      lse[n] = losses[n] = T(0);
      if (grad) std::fill(grad + n * V, grad + (n + 1) * V, T(0));
      continue;
    }
    const T* x = logits + n * V;
    // The max is exact in T; NaN logits are skipped here and make s NaN below.
    T mt = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : mt)
    for (int64_t v = 0; v < V; ++v) mt = x[v] > mt ? x[v] : mt;
    const double m = double(mt);
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t v = 0; v < V; ++v) s += exp_d(double(x[v]) - m);
    const double L = m + std::log(s);
    lse[n] = T(L);
    losses[n] = T(L - double(x[y]));
    // The row is still in L1: its gradient now costs no second trip to
    // memory (the backward would read all N x V logits again).
    if (grad) grad_row(grad + n * V, x, V, y, L, g);
  }
}

template <class T, class I>
void cross_entropy_backward(T* dlogits, const T* dloss, const T* logits, const T* lse,
                            const I* targets, int64_t N, int64_t V, int64_t ignore_index,
                            double inv_n_valid) {
  const double g = double(dloss[0]) * inv_n_valid;
#pragma omp parallel for schedule(static) if (N * V > (1 << 15))
  for (int64_t n = 0; n < N; ++n) {
    const int64_t y = int64_t(targets[n]);
    T* dx = dlogits + n * V;
    if (y == ignore_index) {
      std::fill(dx, dx + V, T(0));
      continue;
    }
    // dlogits may be the logits buffer itself (the op reuses it).
    grad_row(dx, logits + n * V, V, y, double(lse[n]), g);
  }
}

#define GL_INSTANTIATE(T, I)                                                                   \
  template void cross_entropy_forward<T, I>(T*, T*, int64_t*, const T*, const I*, int64_t,     \
                                            int64_t, int64_t, T*);                             \
  template void cross_entropy_backward<T, I>(T*, const T*, const T*, const T*, const I*,       \
                                             int64_t, int64_t, int64_t, double);
GL_INSTANTIATE(float, int32_t)
GL_INSTANTIATE(float, int64_t)
GL_INSTANTIATE(double, int32_t)
GL_INSTANTIATE(double, int64_t)
#undef GL_INSTANTIATE

}  // namespace gl::cpu
