// rotary: forward and backward side by side (the backward is the inverse
// rotation; see cpu/rotary.cpp).
#include "autograd/ops/rotary.h"

#include <cmath>

#include "autograd/dispatch.h"
#include "autograd/tape.h"
#include "cpu/rotary.h"
#include "cuda/rotary.h"

namespace gl {

namespace {

// out = R(+theta) x when forward, R(-theta) x otherwise.
Tensor rotary_apply(const Tensor& x, int64_t rotary_dim, double base, int64_t position_offset,
                    bool forward) {
  const Tensor xc = x.contiguous();
  const int64_t BH = x.size(0) * x.size(1), T = x.size(2), HS = x.size(3);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch("rotary", xc,
      [&](auto t) {
        using F = decltype(t);
        if (forward)
          cpu::rotary_forward<F>(out.data<F>(), xc.data<F>(), BH, T, HS, rotary_dim, base,
                                 position_offset);
        else
          cpu::rotary_backward<F>(out.data<F>(), xc.data<F>(), BH, T, HS, rotary_dim, base,
                                  position_offset);
      },
      [&](auto t) {
        using F = decltype(t);
        if (forward)
          cuda::rotary_forward<F>(out.data<F>(), xc.data<F>(), BH, T, HS, rotary_dim, base,
                                  position_offset);
        else
          cuda::rotary_backward<F>(out.data<F>(), xc.data<F>(), BH, T, HS, rotary_dim, base,
                                   position_offset);
      });
  return out;
}

}  // namespace

QkvHeads qkv_heads(const Var& qkv, int64_t NH, int64_t rotary_dim, double base, int64_t position_offset) {
  GL_CHECK(qkv.defined(), "qkv_heads: undefined input");
  GL_CHECK(NH >= 1 && qkv.dim() == 3 && qkv.size(2) % (3 * NH) == 0,
           "qkv_heads: qkv must be [B, T, num_heads * 3 * head_size] with num_heads = ", NH, ", got ",
           qkv.describe());
  const int64_t B = qkv.size(0), T = qkv.size(1), HS = qkv.size(2) / (3 * NH);
  GL_CHECK(rotary_dim >= 0 && rotary_dim % 2 == 0 && rotary_dim <= HS,
           "qkv_heads: rotary_dim must be even and in [0, HS], got rotary_dim = ", rotary_dim, " for head size ",
           HS);
  GL_CHECK(std::isfinite(base) && base > 0, "qkv_heads: base must be positive, got ", base);
  GL_CHECK(position_offset >= 0, "qkv_heads: position_offset must be >= 0, got ", position_offset);
  const Tensor x = qkv.value().contiguous();
  // Row (b, h, t) of part p (0 q, 1 k, 2 v) in qkv, and in a [B, NH, T, HS] output.
  const cpu::RotaryRows src{T * NH * 3 * HS, 3 * HS, NH * 3 * HS}, dst{NH * T * HS, T * HS, HS};
  // Part p with rotary dims rd (0: a plain copy), either way, into out.
  auto move = [=](Tensor& out, cpu::RotaryRows orow, int64_t out_off, const Tensor& in, cpu::RotaryRows irow,
                  int64_t in_off, int64_t rd, bool inverse, bool accumulate) {
    dispatch("qkv_heads", in,
        [&](auto t) {
          using F = decltype(t);
          cpu::rotary_strided<F>(out.data<F>() + out_off, orow, in.data<F>() + in_off, irow, B, NH, T, HS, rd,
                                 base, position_offset, inverse, accumulate);
        },
        [&](auto t) {
          using F = decltype(t);
          cuda::rotary_strided<F>(out.data<F>() + out_off, orow, in.data<F>() + in_off, irow, B, NH, T, HS,
                                  rd, base, position_offset, inverse, accumulate);
        });
  };
  QkvHeads out;
  Var* parts[3] = {&out.q, &out.k, &out.v};
  for (int64_t p = 0; p < 3; ++p) {
    const int64_t rd = p < 2 ? rotary_dim : 0;
    Tensor y = Tensor::empty({B, NH, T, HS}, x.dtype(), x.device());
    move(y, dst, 0, x, src, p * HS, rd, false, false);
    *parts[p] = record("qkv_heads", y, {&qkv}, [qkv, p, rd, HS, src, dst, move](const Tensor& dout) {
      if (!qkv.requires_grad()) return;
      const Tensor d = dout.contiguous();
      // Added in place into qkv's gradient when it exists as a plain buffer
      // (it is qkv's own: accumulate_grad's invariant, as slice's backward
      // uses); else this part, inverse-rotated into a zero tensor, becomes it.
      Tensor grad = qkv.impl()->grad;  // a handle on the same storage
      if (grad.defined() && grad.is_contiguous()) {
        move(grad, src, p * HS, d, dst, 0, rd, true, true);
        return;
      }
      Tensor g = Tensor::zeros(qkv.shape(), d.dtype(), d.device());
      move(g, src, p * HS, d, dst, 0, rd, true, true);
      accumulate_grad(qkv, g);
    });
  }
  return out;
}

Var rotary(const Var& x, int64_t rotary_dim, double base, int64_t position_offset) {
  GL_CHECK(x.defined(), "rotary: undefined input");
  GL_CHECK(x.dim() == 4, "rotary: x must be [B, NH, T, HS], got ", x.describe());
  GL_CHECK(rotary_dim >= 0 && rotary_dim % 2 == 0 && rotary_dim <= x.size(3),
           "rotary: rotary_dim must be even and in [0, HS], got rotary_dim = ", rotary_dim,
           " for ", x.describe());
  GL_CHECK(std::isfinite(base) && base > 0, "rotary: base must be positive, got ", base);
  GL_CHECK(position_offset >= 0, "rotary: position_offset must be >= 0, got ", position_offset);
  Tensor out = rotary_apply(x.value(), rotary_dim, base, position_offset, true);
  return record("rotary", out, {&x}, [x, rotary_dim, base, position_offset](const Tensor& dout) {
    accumulate_grad(x, rotary_apply(dout, rotary_dim, base, position_offset, false));
  });
}

}  // namespace gl
