// Knowledge distillation, CPU reference: see cpu/distill.h. One row per
// OpenMP iteration; the log-sum-exps and the KL sum are in double, exp is
// cpu/vmath.h's vectorisable exp_d (a row is one simd loop over V).
#include "cpu/distill.h"

#include <cmath>
#include <limits>

#include "cpu/vmath.h"

namespace gl::cpu {

namespace {

// log sum_v exp(x_v * inv_tau), max-subtracted; -inf when every x_v is -inf.
template <class T>
double row_lse(const T* x, int64_t V, double inv_tau) {
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t v = 0; v < V; ++v) m = std::max(m, double(x[v]) * inv_tau);
  if (m == -std::numeric_limits<double>::infinity()) return m;
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t v = 0; v < V; ++v) s += exp_d(double(x[v]) * inv_tau - m);
  return m + std::log(s);
}

}  // namespace

template <class T>
void distill_kl_forward(T* kl, T* lse_s, T* lse_t, const T* student, const T* teacher,
                        const T* weight, int64_t N, int64_t V, double inv_tau) {
#pragma omp parallel for schedule(static) if (N * V > (1 << 15))
  for (int64_t n = 0; n < N; ++n) {
    if (weight && weight[n] == T(0)) {
      kl[n] = lse_s[n] = lse_t[n] = T(0);
      continue;
    }
    const T* s = student + n * V;
    const T* t = teacher + n * V;
    const double Ls = row_lse(s, V, inv_tau), Lt = row_lse(t, V, inv_tau);
    double acc = 0.0;
    for (int64_t v = 0; v < V; ++v) {
      const double log_pt = double(t[v]) * inv_tau - Lt;
      const double pt = exp_d(log_pt);
      // 0 log 0 = 0: a class the teacher rules out adds nothing (and must
      // not turn into 0 * -inf = NaN).
      if (pt == 0.0) continue;
      acc += pt * (log_pt - (double(s[v]) * inv_tau - Ls));
    }
    kl[n] = T(acc);
    lse_s[n] = T(Ls);
    lse_t[n] = T(Lt);
  }
}

template <class T>
void distill_kl_backward(T* dstudent, const T* dloss, const T* student, const T* teacher,
                         const T* lse_s, const T* lse_t, const T* weight, int64_t N, int64_t V,
                         double inv_tau, double coef) {
  const double g = double(dloss[0]) * coef;
#pragma omp parallel for schedule(static) if (N * V > (1 << 15))
  for (int64_t n = 0; n < N; ++n) {
    T* d = dstudent + n * V;
    const double w = weight ? double(weight[n]) : 1.0;
    if (w == 0.0) {
      for (int64_t v = 0; v < V; ++v) d[v] = T(0);
      continue;
    }
    const T* s = student + n * V;
    const T* t = teacher + n * V;
    const double Ls = double(lse_s[n]), Lt = double(lse_t[n]), gw = g * w;
#pragma omp simd
    for (int64_t v = 0; v < V; ++v)
      d[v] = T(gw * (exp_d(double(s[v]) * inv_tau - Ls) - exp_d(double(t[v]) * inv_tau - Lt)));
  }
}

#define GL_INSTANTIATE(T)                                                                      \
  template void distill_kl_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t,       \
                                      int64_t, double);                                        \
  template void distill_kl_backward<T>(T*, const T*, const T*, const T*, const T*, const T*,   \
                                       const T*, int64_t, int64_t, double, double);
GL_INSTANTIATE(float)
GL_INSTANTIATE(double)
#undef GL_INSTANTIATE

}  // namespace gl::cpu
