// Causal attention on the CPU. See cpu/attention.h for shapes and maths.
//
// Work is cut into blocks of kBlock query rows of one head. For a block the
// scores against every key it may see are one GEMM (cpu/matmul.h: our
// sgemm for f32, single-threaded inside the parallel region), the masked
// softmax runs row by row, and the output is a second GEMM; the Bq x Tk
// score block lives only in per-thread scratch, so nothing T x T is kept
// between forward and backward (only the output and the per-row lse).
// GEMMs and exp run in T (as every BLAS and f32 attention does); the
// softmax normaliser sums in double.
#include "cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/matmul.h"
#include "cpu/vmath.h"

namespace gl::cpu {

namespace {

constexpr int64_t kBlock = 64;  // query rows per block: scratch is kBlock x Tk

// C[M, N] (+)= op(A) . op(B), dense row-major operands (cpu/matmul.h).
template <class T>
void gemm(T* c, const T* a, bool ta, const T* b, bool tb, int64_t M, int64_t N, int64_t K,
          bool accumulate = false) {
  MatmulShape s;
  s.M = M, s.N = N, s.K = K, s.trans_a = ta, s.trans_b = tb, s.accumulate = accumulate;
  matmul_forward<T>(c, a, b, s);
}

// Scores of query rows [t0, t0 + nq) against keys [0, nk) of one head, then
// P = exp(S - lse) with the causal mask applied (masked entries exactly 0).
// Row i sees keys s <= t0 + i + off. With `lse_out`, lse is computed here
// (forward); otherwise it is read from `lse_in` (backward).
template <class T>
void block_probs(T* P, const T* q, const T* k, int64_t t0, int64_t nq, int64_t nk, int64_t HS,
                 int64_t off, double scale, T* lse_out, const T* lse_in) {
  gemm<T>(P, q + t0 * HS, false, k, true, nq, nk, HS);
  for (int64_t i = 0; i < nq; ++i) {
    const int64_t last = t0 + i + off;  // last visible key
    T* row = P + i * nk;
    // exp in T (as every f32 attention does); the normaliser sums in double.
    const T sc = T(scale);
    // exp_d (cpu/vmath.h) is libm's exp in vectorisable form: the argument
    // is formed in T as before, exp is evaluated in double, rounded to T.
    if (lse_out) {
      T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
      for (int64_t s = 0; s <= last; ++s) m = std::max(m, sc * row[s]);
      double l = 0.0;
#pragma omp simd reduction(+ : l)
      for (int64_t s = 0; s <= last; ++s) {
        row[s] = T(exp_d(double(sc * row[s] - m)));
        l += double(row[s]);
      }
      const T inv = T(1.0 / l);
#pragma omp simd
      for (int64_t s = 0; s <= last; ++s) row[s] *= inv;
      lse_out[t0 + i] = T(double(m) + std::log(l));
    } else {
      const T L = lse_in[t0 + i];
#pragma omp simd
      for (int64_t s = 0; s <= last; ++s) row[s] = T(exp_d(double(sc * row[s] - L)));
    }
    for (int64_t s = last + 1; s < nk; ++s) row[s] = T(0);
  }
}

}  // namespace

template <class T>
void attention_forward(T* out, T* lse, const T* q, const T* k, const T* v, int64_t BH,
                       int64_t Tq, int64_t Tk, int64_t HS, double scale) {
  const int64_t off = Tk - Tq, nblocks = (Tq + kBlock - 1) / kBlock;
  const bool big = BH * Tq * Tk * HS > (1 << 16);
#pragma omp parallel if (big)
  {
    std::vector<T> P(size_t(kBlock * Tk));
    // Later blocks see more keys: dynamic scheduling balances them.
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < BH * nblocks; ++task) {
      const int64_t bh = task / nblocks, t0 = (task % nblocks) * kBlock;
      const int64_t nq = std::min(kBlock, Tq - t0), nk = t0 + nq + off;
      block_probs<T>(P.data(), q + bh * Tq * HS, k + bh * Tk * HS, t0, nq, nk, HS, off, scale,
                     lse + bh * Tq, nullptr);
      gemm<T>(out + (bh * Tq + t0) * HS, P.data(), false, v + bh * Tk * HS, false, nq, HS, nk);
    }
  }
}

// Backward, derived from out_t = sum_s P_ts v_s with P_t = softmax(S_t) and
// S_ts = scale * q_t . k_s (all sums over the causal range s <= t + off):
//   dv_s  = sum_t P_ts dout_t                        (out is linear in v)
//   dP_ts = dout_t . v_s
//   dS_ts = P_ts (dP_ts - sum_u P_tu dP_tu)          (softmax Jacobian)
//         = P_ts (dP_ts - D_t),   D_t = sum_u P_tu dout_t . v_u = dout_t . out_t
//   dq_t  = scale * sum_s dS_ts k_s,   dk_s = scale * sum_t dS_ts q_t
// P is recomputed from the saved lse, block by block, with the same GEMMs as
// the forward. dk and dv sum over every query block of a head, so one head
// is one task (no two threads write the same rows): deterministic.
template <class T>
void attention_backward(T* dq, T* dk, T* dv, T* delta, const T* dout, const T* q, const T* k,
                        const T* v, const T* out, const T* lse, int64_t BH, int64_t Tq,
                        int64_t Tk, int64_t HS, double scale) {
  const int64_t off = Tk - Tq;
  const bool big = BH * Tq * Tk * HS > (1 << 15);
#pragma omp parallel if (big)
  {
    std::vector<T> P(size_t(kBlock * Tk)), dS(size_t(kBlock * Tk));
#pragma omp for schedule(dynamic, 1)
    for (int64_t bh = 0; bh < BH; ++bh) {
      const T* qh = q + bh * Tq * HS;
      const T* kh = k + bh * Tk * HS;
      const T* vh = v + bh * Tk * HS;
      const T* doh = dout + bh * Tq * HS;
      T* dK = dk + bh * Tk * HS;
      T* dV = dv + bh * Tk * HS;
      std::fill(dK, dK + Tk * HS, T(0));
      std::fill(dV, dV + Tk * HS, T(0));
      for (int64_t t = 0; t < Tq; ++t) {  // D_t = dout_t . out_t, in double
        double D = 0.0;
        for (int64_t d = 0; d < HS; ++d)
          D += double(doh[t * HS + d]) * double(out[(bh * Tq + t) * HS + d]);
        delta[bh * Tq + t] = T(D);
      }
      for (int64_t t0 = 0; t0 < Tq; t0 += kBlock) {
        const int64_t nq = std::min(kBlock, Tq - t0), nk = t0 + nq + off;
        block_probs<T>(P.data(), qh, kh, t0, nq, nk, HS, off, scale, nullptr, lse + bh * Tq);
        gemm<T>(dS.data(), doh + t0 * HS, false, vh, true, nq, nk, HS);  // dP
        // dS with the score scale folded in, so the three products below
        // need no separate scaling pass.
        for (int64_t i = 0; i < nq; ++i) {
          const T D = delta[bh * Tq + t0 + i], sc = T(scale);
          T* ds = dS.data() + i * nk;
          const T* p = P.data() + i * nk;
#pragma omp simd
          for (int64_t s = 0; s < nk; ++s) ds[s] = sc * (p[s] * (ds[s] - D));
        }
        gemm<T>(dq + (bh * Tq + t0) * HS, dS.data(), false, kh, false, nq, HS, nk);
        gemm<T>(dK, dS.data(), true, qh + t0 * HS, false, nk, HS, nq, true);
        gemm<T>(dV, P.data(), true, doh + t0 * HS, false, nk, HS, nq, true);
      }
    }
  }
}

#define GL_INSTANTIATE(T)                                                                    \
  template void attention_forward<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t, \
                                     int64_t, int64_t, double);                              \
  template void attention_backward<T>(T*, T*, T*, T*, const T*, const T*, const T*, const T*, \
                                      const T*, const T*, int64_t, int64_t, int64_t, int64_t,   \
                                      double);
GL_INSTANTIATE(float)
GL_INSTANTIATE(double)
#undef GL_INSTANTIATE

}  // namespace gl::cpu
