// Logit knowledge distillation kernels: temperature-scaled forward KL from a
// frozen teacher to the student, fused with its gradient (spec.md 5.2;
// Hinton et al. 2015; LLM-QAT utils/kd_trainer.py at tau = 1).
//
// Shapes: student, teacher, dstudent [N, V] contiguous (N = tokens, V =
// classes); weight [N] (1: the token counts, 0: masked) or nullptr (all
// count); kl, lse_s, lse_t [N]; dloss [1].
// Forward, per counted row n, with zs = student[n] / tau, zt = teacher[n] / tau:
//   lse_s[n] = log sum_v exp(zs_v),  lse_t[n] = log sum_v exp(zt_v)
//   kl[n]    = sum_v p_t(v) (log p_t(v) - log p_s(v)),  log p = z - lse
// where terms with p_t(v) = 0 add 0 (0 log 0 = 0), so -inf teacher logits
// (masked classes) are allowed. Masked rows: kl = lse = 0, never read.
// The op's loss is tau^2 * sum_n kl[n] / N_counted. Its gradient:
//   d kl[n] / d zs_v = p_s(v) - p_t(v)     (d lse_s / d zs = p_s; the p_t log p_t
//                                           term does not depend on zs; sum p_t = 1)
//   d zs_v / d student_v = 1 / tau
//   => d loss / d student[n, v] = dloss * (tau / N_counted) * w[n] * (p_s(v) - p_t(v))
// the caller passes coef = tau / N_counted. p_s and p_t are recomputed from
// the saved lse, so the forward keeps no [N, V] buffer.
// Conventions: outputs, inputs, weights, sizes; dstudent is overwritten.
// CPU: rows in parallel (OpenMP), sums in double.
#pragma once
#include <cstdint>

namespace gl::cpu {

template <class T>
void distill_kl_forward(T* kl, T* lse_s, T* lse_t, const T* student, const T* teacher,
                        const T* weight, int64_t N, int64_t V, double inv_tau);
template <class T>
void distill_kl_backward(T* dstudent, const T* dloss, const T* student, const T* teacher,
                         const T* lse_s, const T* lse_t, const T* weight, int64_t N, int64_t V,
                         double inv_tau, double coef);

}  // namespace gl::cpu
