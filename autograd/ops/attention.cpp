// attention: forward and backward side by side; the maths and the backward
// derivation are in cpu/attention.cpp.
#include "autograd/ops/attention.h"

#include <cmath>

#include "autograd/dispatch.h"
#include "autograd/tape.h"
#include "cpu/attention.h"
#include "cuda/attention.h"

namespace gl {

Var attention(const Var& q, const Var& k, const Var& v, double scale) {
  GL_CHECK(q.defined() && k.defined() && v.defined(), "attention: undefined input");
  check_same("attention", q.value(), k.value(), "k");
  check_same("attention", q.value(), v.value(), "v");
  GL_CHECK(q.dim() == 4, "attention: q must be [B, NH, Tq, HS], got ", q.describe());
  GL_CHECK(k.dim() == 4 && k.shape() == v.shape() && k.size(0) == q.size(0) &&
               k.size(1) == q.size(1) && k.size(3) == q.size(3),
           "attention: k and v must be [B, NH, Tk, HS] with q's B, NH, HS, got q ",
           q.describe(), ", k ", k.describe(), ", v ", v.describe());
  GL_CHECK(k.size(2) >= q.size(2), "attention: k, v need at least as many time steps as q ",
           "(Tk >= Tq, queries aligned to the end), got q ", q.describe(), ", k ", k.describe());
  GL_CHECK(std::isfinite(scale), "attention: scale must be finite, got ", scale);
  // Views (e.g. heads split out of a fused qkv projection) are copied once
  // here; the backward reuses the copies.
  const Tensor qc = q.value().contiguous(), kc = k.value().contiguous(),
               vc = v.value().contiguous();
  const int64_t B = q.size(0), NH = q.size(1), Tq = q.size(2), Tk = k.size(2), HS = q.size(3),
                BH = B * NH;
  Tensor out = Tensor::empty(q.shape(), q.dtype(), q.device());
  Tensor lse = Tensor::empty({B, NH, Tq}, q.dtype(), q.device());  // log-sum-exp per query row
  dispatch("attention", qc,
      [&](auto t) {
        using F = decltype(t);
        cpu::attention_forward<F>(out.data<F>(), lse.data<F>(), qc.data<F>(), kc.data<F>(),
                                  vc.data<F>(), BH, Tq, Tk, HS, scale);
      },
      [&](auto t) {
        using F = decltype(t);
        cuda::attention_forward<F>(out.data<F>(), lse.data<F>(), qc.data<F>(), kc.data<F>(),
                                   vc.data<F>(), BH, Tq, Tk, HS, scale);
      });
  return record("attention", out, {&q, &k, &v},
                [q, k, v, qc, kc, vc, out, lse, scale, BH, Tq, Tk, HS](const Tensor& dout) {
    const Tensor doc = dout.contiguous();
    Tensor dq = Tensor::empty_like(qc), dk = Tensor::empty_like(kc), dv = Tensor::empty_like(vc);
    Tensor delta = Tensor::empty_like(lse);  // D_t = dout_t . out_t, scratch
    dispatch("attention backward", qc,
        [&](auto t) {
          using F = decltype(t);
          cpu::attention_backward<F>(dq.data<F>(), dk.data<F>(), dv.data<F>(), delta.data<F>(),
                                     doc.data<F>(), qc.data<F>(), kc.data<F>(), vc.data<F>(),
                                     out.data<F>(), lse.data<F>(), BH, Tq, Tk, HS, scale);
        },
        [&](auto t) {
          using F = decltype(t);
          cuda::attention_backward<F>(dq.data<F>(), dk.data<F>(), dv.data<F>(), delta.data<F>(),
                                      doc.data<F>(), qc.data<F>(), kc.data<F>(), vc.data<F>(),
                                      out.data<F>(), lse.data<F>(), BH, Tq, Tk, HS,
                                      scale);
        });
    accumulate_grad(q, dq);
    accumulate_grad(k, dk);
    accumulate_grad(v, dv);
  });
}

}  // namespace gl
