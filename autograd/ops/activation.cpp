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

}  // namespace gl
