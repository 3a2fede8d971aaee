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
