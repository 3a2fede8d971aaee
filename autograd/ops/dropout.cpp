// Inverted dropout as an autograd op. The backward closure captures only
// (p, seed, offset): dx = mask * dout / (1 - p) with the mask regenerated
// by the same Philox expression as the forward (cpu/dropout.h), so no mask
// tensor is kept alive between forward and backward.
#include "autograd/ops/dropout.h"

#include "autograd/dispatch.h"
#include "autograd/tape.h"
#include "cpu/dropout.h"
#include "cuda/dropout.h"

namespace gl {

Var dropout(const Var& x, double p, Generator& gen, bool training) {
  GL_CHECK(x.defined(), "dropout: undefined input x");
  GL_CHECK(x.dtype() == DType::F32 || x.dtype() == DType::F64, "dropout: dtype ",
           dtype_name(x.dtype()), " not supported for x (", x.describe(),
           "); ops compute in f32 or f64, convert with .to(DType::F32)");
  // Both comparisons are false for a NaN p, so it is rejected too.
  GL_CHECK(p >= 0.0 && p < 1.0, "dropout: p must be in [0, 1), got ", p, " for x (",
           x.describe(), ")");
  if (p == 0.0 || !training) return x;
  const Tensor xc = x.value().contiguous();
  const int64_t n = xc.numel();
  const uint64_t seed = gen.seed, offset = gen.advance(uint64_t(n + 3) / 4);
  Tensor out = Tensor::empty(xc.shape(), xc.dtype(), xc.device());
  dispatch("dropout", xc,
      [&](auto t) {
        using T = decltype(t);
        cpu::dropout_forward<T>(out.data<T>(), xc.data<T>(), n, p, seed, offset);
      },
      [&](auto t) {
        using T = decltype(t);
        cuda::dropout_forward<T>(out.data<T>(), xc.data<T>(), n, p, seed, offset);
      });
  return record("dropout", out, {&x}, [x, n, p, seed, offset](const Tensor& dout) {
    const Tensor g = dout.contiguous();
    Tensor dx = Tensor::empty_like(g);
    dispatch("dropout backward", g,
        [&](auto t) {
          using T = decltype(t);
          cpu::dropout_backward<T>(dx.data<T>(), g.data<T>(), n, p, seed, offset);
        },
        [&](auto t) {
          using T = decltype(t);
          cuda::dropout_backward<T>(dx.data<T>(), g.data<T>(), n, p, seed, offset);
        });
    accumulate_grad(x, dx);
  });
}

}  // namespace gl
