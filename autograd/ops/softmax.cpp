// Softmax as an autograd op: x is flattened to [rows, C]; the backward
// closure saves the output y (all the backward needs), not x.
#include "autograd/ops/softmax.h"

#include "autograd/dispatch.h"
#include "autograd/tape.h"
#include "cpu/softmax.h"
#include "cuda/softmax.h"

namespace gl {

Var softmax(const Var& x) {
  GL_CHECK(x.defined(), "softmax: undefined input x");
  GL_CHECK(x.dtype() == DType::F32 || x.dtype() == DType::F64, "softmax: dtype ",
           dtype_name(x.dtype()), " not supported for x (", x.describe(),
           "); ops compute in f32 or f64, convert with .to(DType::F32)");
  GL_CHECK(x.dim() >= 1, "softmax: x (", x.describe(), ") needs at least one dim");
  const Tensor xc = x.value().contiguous();
  const int64_t C = xc.size(-1);
  const int64_t rows = shape_numel(Shape(xc.shape().begin(), xc.shape().end() - 1));
  Tensor out = Tensor::empty(xc.shape(), xc.dtype(), xc.device());
  dispatch("softmax", xc,
      [&](auto t) {
        using T = decltype(t);
        cpu::softmax_forward<T>(out.data<T>(), xc.data<T>(), rows, C);
      },
      [&](auto t) {
        using T = decltype(t);
        cuda::softmax_forward<T>(out.data<T>(), xc.data<T>(), rows, C);
      });
  return record("softmax", out, {&x}, [x, out, rows, C](const Tensor& dout) {
    const Tensor g = dout.contiguous();
    Tensor dx = Tensor::empty_like(out);
    dispatch("softmax backward", out,
        [&](auto t) {
          using T = decltype(t);
          cpu::softmax_backward<T>(dx.data<T>(), g.data<T>(), out.data<T>(), rows, C);
        },
        [&](auto t) {
          using T = decltype(t);
          cuda::softmax_backward<T>(dx.data<T>(), g.data<T>(), out.data<T>(), rows, C);
        });
    accumulate_grad(x, dx);
  });
}

}  // namespace gl
