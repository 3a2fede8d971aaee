// LayerNorm and RMSNorm as autograd ops: each forward runs the fused row
// kernel, saves the per-row statistics it produced (mean and rstd, in x's
// dtype), and records a backward closure that runs the fused backward
// kernel (derivations of the dx terms in cpu/norm.cpp). x is flattened to
// [rows, C]; weight/bias are optional.
#include "autograd/ops/norm.h"

#include "autograd/dispatch.h"
#include "autograd/tape.h"
#include "cpu/norm.h"
#include "cuda/norm.h"

namespace gl {

namespace {

template <class T>
T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

void check_norm_input(const char* op, const Var& x, double eps) {
  GL_CHECK(x.defined(), op, ": undefined input x");
  GL_CHECK(x.dtype() == DType::F32 || x.dtype() == DType::F64, op, ": dtype ",
           dtype_name(x.dtype()), " not supported for x (", x.describe(),
           "); ops compute in f32 or f64, convert with .to(DType::F32)");
  GL_CHECK(x.dim() >= 1, op, ": x (", x.describe(), ") needs at least one dim");
  GL_CHECK(eps >= 0, op, ": eps must be >= 0, got ", eps);
}

// A defined weight or bias must be [C] with x's dtype and device.
void check_norm_param(const char* op, const Var& x, const Var& p, const char* name) {
  if (!p.defined()) return;
  GL_CHECK(p.dim() == 1 && p.size(0) == x.size(-1), op, ": ", name, " (", p.describe(),
           ") does not match x (", x.describe(), "), expected [", x.size(-1), "]");
  check_same(op, x.value(), p.value(), name);
}

int64_t leading_rows(const Tensor& x) {
  return shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
}

}  // namespace

Var layer_norm(const Var& x, const Var& weight, const Var& bias, double eps) {
  check_norm_input("layer_norm", x, eps);
  check_norm_param("layer_norm", x, weight, "weight");
  check_norm_param("layer_norm", x, bias, "bias");
  const Tensor xc = x.value().contiguous();
  const Tensor w = weight.defined() ? weight.value().contiguous() : Tensor();
  const Tensor b = bias.defined() ? bias.value().contiguous() : Tensor();
  const int64_t rows = leading_rows(xc), C = xc.size(-1);
  Tensor out = Tensor::empty(xc.shape(), xc.dtype(), xc.device());
  // Statistics are saved only when a backward will read them.
  const bool grad = needs_grad({&x, &weight, &bias});
  const Tensor mean = grad ? Tensor::empty({rows}, xc.dtype(), xc.device()) : Tensor();
  const Tensor rstd = grad ? Tensor::empty({rows}, xc.dtype(), xc.device()) : Tensor();
  dispatch("layer_norm", xc,
      [&](auto t) {
        using T = decltype(t);
        cpu::layer_norm_forward<T>(out.data<T>(), data_or_null<T>(mean), data_or_null<T>(rstd),
                                   xc.data<T>(), data_or_null<T>(w), data_or_null<T>(b), rows,
                                   C, eps);
      },
      [&](auto t) {
        using T = decltype(t);
        cuda::layer_norm_forward<T>(out.data<T>(), data_or_null<T>(mean), data_or_null<T>(rstd),
                                    xc.data<T>(), data_or_null<T>(w), data_or_null<T>(b), rows,
                                    C, eps);
      });
  return record("layer_norm", out, {&x, &weight, &bias},
                [x, weight, bias, xc, w, mean, rstd, rows, C](const Tensor& dout) {
    const Tensor g = dout.contiguous();
    // dx is overwritten by the kernel; dweight/dbias accumulate, so start at 0.
    const Tensor dx = x.requires_grad() ? Tensor::empty_like(xc) : Tensor();
    const Tensor dw = weight.requires_grad() ? Tensor::zeros_like(w) : Tensor();
    const Tensor db = bias.requires_grad() ? Tensor::zeros(bias.shape(), xc.dtype(), xc.device())
                                           : Tensor();
    dispatch("layer_norm backward", xc,
        [&](auto t) {
          using T = decltype(t);
          cpu::layer_norm_backward<T>(data_or_null<T>(dx), data_or_null<T>(dw),
                                      data_or_null<T>(db), g.data<T>(), xc.data<T>(),
                                      data_or_null<T>(w), mean.data<T>(), rstd.data<T>(), rows,
                                      C);
        },
        [&](auto t) {
          using T = decltype(t);
          cuda::layer_norm_backward<T>(data_or_null<T>(dx), data_or_null<T>(dw),
                                       data_or_null<T>(db), g.data<T>(), xc.data<T>(),
                                       data_or_null<T>(w), mean.data<T>(), rstd.data<T>(), rows,
                                       C);
        });
    if (dx.defined()) accumulate_grad(x, dx);
    if (dw.defined()) accumulate_grad(weight, dw);
    if (db.defined()) accumulate_grad(bias, db);
  });
}

Var rms_norm(const Var& x, const Var& weight, double eps) {
  check_norm_input("rms_norm", x, eps);
  check_norm_param("rms_norm", x, weight, "weight");
  const Tensor xc = x.value().contiguous();
  const Tensor w = weight.defined() ? weight.value().contiguous() : Tensor();
  const int64_t rows = leading_rows(xc), C = xc.size(-1);
  Tensor out = Tensor::empty(xc.shape(), xc.dtype(), xc.device());
  const bool grad = needs_grad({&x, &weight});
  const Tensor rstd = grad ? Tensor::empty({rows}, xc.dtype(), xc.device()) : Tensor();
  dispatch("rms_norm", xc,
      [&](auto t) {
        using T = decltype(t);
        cpu::rms_norm_forward<T>(out.data<T>(), data_or_null<T>(rstd), xc.data<T>(),
                                 data_or_null<T>(w), rows, C, eps);
      },
      [&](auto t) {
        using T = decltype(t);
        cuda::rms_norm_forward<T>(out.data<T>(), data_or_null<T>(rstd), xc.data<T>(),
                                  data_or_null<T>(w), rows, C, eps);
      });
  return record("rms_norm", out, {&x, &weight},
                [x, weight, xc, w, rstd, rows, C](const Tensor& dout) {
    const Tensor g = dout.contiguous();
    const Tensor dx = x.requires_grad() ? Tensor::empty_like(xc) : Tensor();
    const Tensor dw = weight.requires_grad() ? Tensor::zeros_like(w) : Tensor();
    dispatch("rms_norm backward", xc,
        [&](auto t) {
          using T = decltype(t);
          cpu::rms_norm_backward<T>(data_or_null<T>(dx), data_or_null<T>(dw), g.data<T>(),
                                    xc.data<T>(), data_or_null<T>(w), rstd.data<T>(), rows, C);
        },
        [&](auto t) {
          using T = decltype(t);
          cuda::rms_norm_backward<T>(data_or_null<T>(dx), data_or_null<T>(dw), g.data<T>(),
                                     xc.data<T>(), data_or_null<T>(w), rstd.data<T>(), rows, C);
        });
    if (dx.defined()) accumulate_grad(x, dx);
    if (dw.defined()) accumulate_grad(weight, dw);
  });
}

}  // namespace gl
