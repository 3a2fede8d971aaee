// attention: forward and backward side by side; the maths and the backward
// derivation are in cpu/attention.cpp.
#include "autograd/ops/attention.h"

#include <cmath>
#include <type_traits>

#include "autograd/dispatch.h"
#include "autograd/ops/matmul.h"
#include "autograd/tape.h"
#include "cpu/attention.h"
#include "cuda/attention.h"

namespace gl {

namespace {

// run.precision bf16 / f16 for attention (f32 inputs only), as for the
// matrix products: the operands of attention's products are rounded to
// bf16 / f16 (nearest even) and accumulated in f32. On CUDA with head sizes
// up to 128 the tensor-core kernels round q, k, v, dout as they load them
// and also round the probabilities P and dS before the products that take
// them (as FlashAttention-2 does in bf16); elsewhere, the CPU included, the
// inputs are rounded here and the f32 kernels run on them, so P and dS stay
// f32: the CPU reference differs from the GPU by that rounding only (a
// relative 2^-9 per probability in bf16, 2^-12 in f16).
struct LowPrecision {
  bool on = false, f16 = false;
  Tensor round(const Tensor& t) const { return t.to(f16 ? DType::F16 : DType::BF16).to(DType::F32); }
};

LowPrecision attention_precision(const Tensor& q) {
  const MatmulPrecision p = matmul_precision();
  if (q.dtype() != DType::F32 || p == MatmulPrecision::F32) return {};
  return {true, p == MatmulPrecision::F16};
}

bool tensor_core_lowp(const LowPrecision& lp, const Tensor& q, int64_t HS) {
#if GRIDLOCK_CUDA
  return lp.on && q.is_cuda() && cuda::flash_attention_supports(HS);
#else
  (void)lp, (void)q, (void)HS;
  return false;
#endif
}

}  // namespace

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
  const int64_t B = q.size(0), NH = q.size(1), Tq = q.size(2), Tk = k.size(2), HS = q.size(3),
                BH = B * NH;
  const LowPrecision lp = attention_precision(q.value());
  const bool tc_lowp = tensor_core_lowp(lp, q.value(), HS);
  auto operand = [&](const Var& x) {
    return lp.on && !tc_lowp ? lp.round(x.value()) : x.value().contiguous();
  };
  const Tensor qc = operand(q), kc = operand(k), vc = operand(v);
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
        if constexpr (std::is_same_v<F, float>) {
          if (tc_lowp)
            return cuda::flash_attention_lowp_forward(out.data<F>(), lse.data<F>(), qc.data<F>(),
                                                      kc.data<F>(), vc.data<F>(), BH, Tq, Tk, HS,
                                                      scale, lp.f16);
        }
        cuda::attention_forward<F>(out.data<F>(), lse.data<F>(), qc.data<F>(), kc.data<F>(),
                                   vc.data<F>(), BH, Tq, Tk, HS, scale);
      });
  return record("attention", out, {&q, &k, &v},
                [q, k, v, qc, kc, vc, out, lse, scale, BH, Tq, Tk, HS, lp, tc_lowp](const Tensor& dout) {
    const Tensor doc = lp.on && !tc_lowp ? lp.round(dout) : dout.contiguous();
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
          if constexpr (std::is_same_v<F, float>) {
            if (tc_lowp)
              return cuda::flash_attention_lowp_backward(
                  dq.data<F>(), dk.data<F>(), dv.data<F>(), delta.data<F>(), doc.data<F>(), qc.data<F>(),
                  kc.data<F>(), vc.data<F>(), out.data<F>(), lse.data<F>(), BH, Tq, Tk, HS, scale, lp.f16);
          }
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
