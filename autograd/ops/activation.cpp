// GELU as an autograd op: the forward keeps x (contiguous), the backward
// computes dx = dout * gelu'(x) in one fused elementwise kernel.
#include "autograd/ops/activation.h"

#include "autograd/dispatch.h"
#include "autograd/tape.h"
#include "cuda/activation.h"

namespace gl {

static void check_activation_input(const char* op, const Var& x) {
  GL_CHECK(x.defined(), op, ": undefined input x");
  GL_CHECK(x.dtype() == DType::F32 || x.dtype() == DType::F64, op, ": dtype ",
           dtype_name(x.dtype()), " not supported for x (", x.describe(),
           "); ops compute in f32 or f64, convert with .to(DType::F32)");
}

Var gelu(const Var& x, GeluKind kind) {
  check_activation_input("gelu", x);
  const Tensor xc = x.value().contiguous();
  Tensor out = Tensor::empty(xc.shape(), xc.dtype(), xc.device());
  dispatch("gelu", xc,
      [&](auto t) {
        using T = decltype(t);
        cpu::gelu_forward<T>(out.data<T>(), xc.data<T>(), xc.numel(), kind);
      },
      [&](auto t) {
        using T = decltype(t);
        cuda::gelu_forward<T>(out.data<T>(), xc.data<T>(), xc.numel(), kind);
      });
  return record("gelu", out, {&x}, [x, xc, kind](const Tensor& dout) {
    const Tensor g = dout.contiguous();
    Tensor dx = Tensor::empty_like(xc);
    dispatch("gelu backward", xc,
        [&](auto t) {
          using T = decltype(t);
          cpu::gelu_backward<T>(dx.data<T>(), g.data<T>(), xc.data<T>(), xc.numel(), kind);
        },
        [&](auto t) {
          using T = decltype(t);
          cuda::gelu_backward<T>(dx.data<T>(), g.data<T>(), xc.data<T>(), xc.numel(), kind);
        });
    accumulate_grad(x, dx);
  });
}

Var bias_gelu(const Var& y, const Var& bias, GeluKind kind) {
  check_activation_input("bias_gelu", y);
  GL_CHECK(y.dim() >= 1, "bias_gelu: y (", y.describe(), ") needs at least one dim");
  GL_CHECK(bias.defined() && bias.dim() == 1 && bias.size(0) == y.size(-1), "bias_gelu: bias (",
           bias.defined() ? bias.describe() : std::string("undefined"), ") does not match y (",
           y.describe(), "), expected [", y.size(-1), "]");
  check_same("bias_gelu", y.value(), bias.value(), "bias");
  const Tensor yc = y.value().contiguous();
  const Tensor b = bias.value().contiguous();
  const int64_t C = yc.size(-1), rows = C ? yc.numel() / C : 0;
  Tensor out = Tensor::empty(yc.shape(), yc.dtype(), yc.device());
  dispatch("bias_gelu", yc,
      [&](auto t) {
        using T = decltype(t);
        cpu::bias_gelu_forward<T>(out.data<T>(), yc.data<T>(), b.data<T>(), rows, C, kind);
      },
      [&](auto t) {
        using T = decltype(t);
        cuda::bias_gelu_forward<T>(out.data<T>(), yc.data<T>(), b.data<T>(), rows, C, kind);
      });
  return record("bias_gelu", out, {&y, &bias}, [y, bias, yc, b, rows, C, kind](const Tensor& dout) {
    const Tensor g = dout.contiguous();
    // dy is computed even when only the bias needs a gradient: dbias is its column sum.
    Tensor dy = Tensor::empty_like(yc);
    const Tensor db = bias.requires_grad() ? Tensor::zeros_like(b) : Tensor();
    dispatch("bias_gelu backward", yc,
        [&](auto t) {
          using T = decltype(t);
          cpu::bias_gelu_backward<T>(dy.data<T>(), db.defined() ? db.data<T>() : nullptr, g.data<T>(),
                                     yc.data<T>(), b.data<T>(), rows, C, kind);
        },
        [&](auto t) {
          using T = decltype(t);
          cuda::bias_gelu_backward<T>(dy.data<T>(), db.defined() ? db.data<T>() : nullptr, g.data<T>(),
                                      yc.data<T>(), b.data<T>(), rows, C, kind);
        });
    if (y.requires_grad()) accumulate_grad(y, dy);
    if (db.defined()) accumulate_grad(bias, db);
  });
}

}  // namespace gl
