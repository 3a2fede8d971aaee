// Causal attention, CPU reference: every dot product, softmax sum and
// gradient accumulates in double, whatever T is. See cpu/attention.h.
#include "cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace gl::cpu {

static inline double dot(const double* a, const double* b, int64_t n) {
  double acc = 0.0;
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

// Copies n values of one row into double scratch (so the inner loops below
// read one type and vectorise).
template <class T>
static inline void load_row(double* dst, const T* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = double(src[i]);
}

// Two-pass softmax per query row t: scores S_ts (s <= t) into scratch, their
// max m, then lse = m + log sum exp(S - m) and out = sum exp(S - lse) v_s.
// Rows are independent; dynamic scheduling because row t costs t + 1 keys.
template <class T>
void attention_forward(T* out, T* lse, const T* q, const T* k, const T* v, int64_t BH,
                       int64_t seq_len, int64_t HS, double scale) {
  const int64_t rows = BH * seq_len;
  const bool big = rows * seq_len * HS > (1 << 16);
#pragma omp parallel if (big)
  {
    const size_t ns = size_t(seq_len), nd = size_t(HS);
    std::vector<double> s(ns), acc(nd), qrow(nd), krow(nd);
#pragma omp for schedule(dynamic, 8)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t bh = r / seq_len, t = r % seq_len;
      const T* qt = q + r * HS;
      const T* kb = k + bh * seq_len * HS;
      const T* vb = v + bh * seq_len * HS;
      load_row(qrow.data(), qt, HS);
      double m = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j <= t; ++j) {
        load_row(krow.data(), kb + j * HS, HS);
        s[size_t(j)] = scale * dot(qrow.data(), krow.data(), HS);
        m = std::max(m, s[size_t(j)]);
      }
      double l = 0.0;
      for (int64_t j = 0; j <= t; ++j) l += std::exp(s[size_t(j)] - m);
      const double L = m + std::log(l);
      for (int64_t d = 0; d < HS; ++d) acc[size_t(d)] = 0.0;
      for (int64_t j = 0; j <= t; ++j) {
        const double p = std::exp(s[size_t(j)] - L);
        const T* vj = vb + j * HS;
        for (int64_t d = 0; d < HS; ++d) acc[size_t(d)] += p * double(vj[d]);
      }
      for (int64_t d = 0; d < HS; ++d) out[r * HS + d] = T(acc[size_t(d)]);
      lse[r] = T(L);
    }
  }
}

// Backward, derived from out_t = sum_s P_ts v_s with P_t = softmax(S_t) and
// S_ts = scale * q_t . k_s (all sums over the causal range s <= t):
//   dv_s  = sum_t P_ts dout_t                        (out is linear in v)
//   dP_ts = dout_t . v_s
//   dS_ts = P_ts (dP_ts - sum_u P_tu dP_tu)          (softmax Jacobian)
//         = P_ts (dP_ts - D_t),   D_t = sum_u P_tu dout_t . v_u = dout_t . out_t
//   dq_t  = scale * sum_s dS_ts k_s,   dk_s = scale * sum_t dS_ts q_t
// P_ts is recomputed as exp(S_ts - lse_t) from the saved lse. One (b, h) per
// task: dk and dv sum over query rows, so a head's rows stay on one thread,
// accumulated in double scratch in a fixed order (deterministic).
template <class T>
void attention_backward(T* dq, T* dk, T* dv, T* delta, const T* dout, const T* q, const T* k,
                        const T* v, const T* out, const T* lse, int64_t BH, int64_t seq_len,
                        int64_t HS, double scale) {
  const bool big = BH * seq_len * seq_len * HS > (1 << 15);
  const size_t n = size_t(seq_len * HS);
#pragma omp parallel if (big)
  {
    const size_t nd = size_t(HS);
    std::vector<double> qh(n), kh(n), vh(n), doh(n), dkh(n), dvh(n), dqt(nd);
#pragma omp for schedule(dynamic, 1)
    for (int64_t bh = 0; bh < BH; ++bh) {
      const int64_t base = bh * seq_len * HS;
      load_row(qh.data(), q + base, int64_t(n));
      load_row(kh.data(), k + base, int64_t(n));
      load_row(vh.data(), v + base, int64_t(n));
      load_row(doh.data(), dout + base, int64_t(n));
      std::fill(dkh.begin(), dkh.end(), 0.0);
      std::fill(dvh.begin(), dvh.end(), 0.0);
      for (int64_t t = 0; t < seq_len; ++t) {
        const double* qt = qh.data() + t * HS;
        const double* dout_t = doh.data() + t * HS;
        double D = 0.0;
        for (int64_t d = 0; d < HS; ++d) D += dout_t[d] * double(out[base + t * HS + d]);
        delta[bh * seq_len + t] = T(D);
        const double L = double(lse[bh * seq_len + t]);
        std::fill(dqt.begin(), dqt.end(), 0.0);
        for (int64_t s = 0; s <= t; ++s) {
          const double* ks = kh.data() + s * HS;
          const double* vs = vh.data() + s * HS;
          const double p = std::exp(scale * dot(qt, ks, HS) - L);
          const double ds = p * (dot(dout_t, vs, HS) - D);
          double* dks = dkh.data() + s * HS;
          double* dvs = dvh.data() + s * HS;
          for (int64_t d = 0; d < HS; ++d) {
            dqt[size_t(d)] += ds * ks[d];
            dks[d] += ds * qt[d];
            dvs[d] += p * dout_t[d];
          }
        }
        for (int64_t d = 0; d < HS; ++d) dq[base + t * HS + d] = T(scale * dqt[size_t(d)]);
      }
      for (size_t i = 0; i < n; ++i) {
        dk[base + int64_t(i)] = T(scale * dkh[i]);
        dv[base + int64_t(i)] = T(dvh[i]);
      }
    }
  }
}

#define GL_INSTANTIATE(T)                                                                    \
  template void attention_forward<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t, \
                                     int64_t, double);                                       \
  template void attention_backward<T>(T*, T*, T*, T*, const T*, const T*, const T*, const T*, \
                                      const T*, const T*, int64_t, int64_t, int64_t, double);
GL_INSTANTIATE(float)
GL_INSTANTIATE(double)
#undef GL_INSTANTIATE

}  // namespace gl::cpu
