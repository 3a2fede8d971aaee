// distill_kl: forward and backward side by side (see autograd/ops/distill.h
// and cpu/distill.h). The forward keeps only per-row log-sum-exps of the
// student and the teacher; the backward recomputes both softmaxes from them.
// A mask is read on the host once (it is [B, T], small) to validate it and
// count the tokens; the kernels get it as a 0/1 row weight in T.
#include "autograd/ops/distill.h"

#include <cmath>
#include <limits>

#include "autograd/dispatch.h"
#include "autograd/ops/elementwise.h"
#include "autograd/ops/reduce.h"
#include "autograd/tape.h"
#include "cpu/distill.h"
#include "cuda/distill.h"

namespace gl {

Var distill_kl(const Var& student_logits, const Tensor& teacher_logits, double temperature,
               const Tensor& mask) {
  GL_CHECK(student_logits.defined() && teacher_logits.defined(),
           "distill_kl: undefined student or teacher logits");
  GL_CHECK(student_logits.dim() >= 1, "distill_kl: student logits must be [..., V], got ",
           student_logits.describe());
  check_same("distill_kl", student_logits.value(), teacher_logits, "teacher_logits");
  GL_CHECK(teacher_logits.shape() == student_logits.shape(),
           "distill_kl: teacher logits ", teacher_logits.describe(),
           " must have the student logits' shape ", student_logits.describe());
  GL_CHECK(std::isfinite(temperature) && temperature > 0.0,
           "distill_kl: temperature must be finite and > 0, got ", temperature);
  const int64_t V = student_logits.size(-1);
  GL_CHECK(V >= 1, "distill_kl: no classes in ", student_logits.describe());
  const Shape rows_shape(student_logits.shape().begin(), student_logits.shape().end() - 1);
  const int64_t N = shape_numel(rows_shape);
  const DType dt = student_logits.dtype();
  const Device dev = student_logits.device();

  // Row weights (0/1) and the count of counted tokens.
  Tensor weight;  // undefined: every row counts
  int64_t n_counted = N;
  if (mask.defined()) {
    GL_CHECK(mask.shape() == rows_shape, "distill_kl: mask must have shape ", shape_str(rows_shape),
             " (the logits without the last dim), got mask ", mask.describe(), " for logits ",
             student_logits.describe());
    const std::vector<double> m = mask.to_vector();
    n_counted = 0;
    for (size_t i = 0; i < m.size(); ++i) {
      GL_CHECK(m[i] == 0.0 || m[i] == 1.0, "distill_kl: mask values must be 0 or 1, got ", m[i],
               " at flat position ", i, " of mask ", mask.describe());
      n_counted += m[i] != 0.0;
    }
    weight = Tensor::from_vector(m, {N}, dt, dev);
  }

  const Tensor sc = student_logits.value().contiguous(), tc = teacher_logits.contiguous();
  Tensor kl = Tensor::empty({N}, dt, dev), lse_s = Tensor::empty({N}, dt, dev),
         lse_t = Tensor::empty({N}, dt, dev);
  const double inv_tau = 1.0 / temperature;
  dispatch("distill_kl", sc,
      [&](auto t) {
        using T = decltype(t);
        cpu::distill_kl_forward<T>(kl.data<T>(), lse_s.data<T>(), lse_t.data<T>(), sc.data<T>(),
                                   tc.data<T>(), weight.defined() ? weight.data<T>() : nullptr, N,
                                   V, inv_tau);
      },
      [&](auto t) {
        using T = decltype(t);
        cuda::distill_kl_forward<T>(kl.data<T>(), lse_s.data<T>(), lse_t.data<T>(), sc.data<T>(),
                                    tc.data<T>(), weight.defined() ? weight.data<T>() : nullptr,
                                    N, V, inv_tau);
      });
  // tau^2 * mean over counted rows; NaN (0/0) when none counts, as cross_entropy.
  const Tensor total = sum_tensor(kl, {}, false);
  const Tensor loss =
      n_counted > 0 ? affine(total, temperature * temperature / double(n_counted), 0.0)
                    : Tensor::full({}, std::numeric_limits<double>::quiet_NaN(), dt, dev);
  return record("distill_kl", loss, {&student_logits},
                [student_logits, sc, tc, weight, lse_s, lse_t, N, V, inv_tau, temperature,
                 n_counted](const Tensor& dout) {
    const Tensor doc = dout.contiguous();
    // d (tau^2 / N sum kl) / d student = tau^2 / N * (p_s - p_t) / tau, see cpu/distill.h.
    const double coef = n_counted > 0 ? temperature / double(n_counted) : 0.0;
    Tensor ds = Tensor::empty_like(sc);
    dispatch("distill_kl backward", sc,
        [&](auto t) {
          using T = decltype(t);
          cpu::distill_kl_backward<T>(ds.data<T>(), doc.data<T>(), sc.data<T>(), tc.data<T>(),
                                      lse_s.data<T>(), lse_t.data<T>(),
                                      weight.defined() ? weight.data<T>() : nullptr, N, V,
                                      inv_tau, coef);
        },
        [&](auto t) {
          using T = decltype(t);
          cuda::distill_kl_backward<T>(ds.data<T>(), doc.data<T>(), sc.data<T>(), tc.data<T>(),
                                       lse_s.data<T>(), lse_t.data<T>(),
                                       weight.defined() ? weight.data<T>() : nullptr, N, V,
                                       inv_tau, coef);
        });
    accumulate_grad(student_logits, ds);
  });
}

}  // namespace gl
