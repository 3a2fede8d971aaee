// LayerNorm and RMSNorm as autograd ops: each forward runs the fused row
// kernel, saves the per-row statistics it produced (mean and rstd, in x's
// dtype), and records a backward closure that runs the fused backward
// kernel (derivations of the dx terms in cpu/norm.cpp). x is flattened to
// [rows, C]; weight/bias are optional. The add_ forms run the residual add
// in the same kernel and record it as the add node it replaces, so the
// backward is exactly the unfused graph's.
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

namespace {

// A defined residual r must match x exactly (the stream and a block's output).
void check_residual(const char* op, const Var& x, const Var& r) {
  if (!r.defined()) return;
  GL_CHECK(r.shape() == x.shape(), op, ": residual r (", r.describe(), ") does not match x (",
           x.describe(), ")");
  check_same(op, x.value(), r.value(), "r");
}

// The norm's input: x itself, or (r defined) the Var of sum = x + r, which
// the fused kernel has written into `s`; recorded as the add it replaces.
Var norm_input(const Var& x, const Var& r, const Tensor& s, AddNormed* out) {
  if (!r.defined()) return x;
  out->sum = record("add", s, {&x, &r}, [x, r](const Tensor& dout) {
    accumulate_grad(x, dout);
    accumulate_grad(r, dout);
  });
  return out->sum;
}

// layer_norm of x, or of x + r with the add fused into the kernel.
AddNormed layer_norm_impl(const char* op, const Var& x_in, const Var& r, const Var& weight,
                          const Var& bias, double eps) {
  check_norm_input(op, x_in, eps);
  check_residual(op, x_in, r);
  check_norm_param(op, x_in, weight, "weight");
  check_norm_param(op, x_in, bias, "bias");
  const Tensor xin = x_in.value().contiguous();
  const Tensor rc = r.defined() ? r.value().contiguous() : Tensor();
  const Tensor w = weight.defined() ? weight.value().contiguous() : Tensor();
  const Tensor b = bias.defined() ? bias.value().contiguous() : Tensor();
  const int64_t rows = leading_rows(xin), C = xin.size(-1);
  const Tensor s = r.defined() ? Tensor::empty(xin.shape(), xin.dtype(), xin.device()) : Tensor();
  Tensor out = Tensor::empty(xin.shape(), xin.dtype(), xin.device());
  // Statistics are saved only when a backward will read them.
  const bool grad = needs_grad({&x_in, &r, &weight, &bias});
  const Tensor mean = grad ? Tensor::empty({rows}, xin.dtype(), xin.device()) : Tensor();
  const Tensor rstd = grad ? Tensor::empty({rows}, xin.dtype(), xin.device()) : Tensor();
  dispatch(op, xin,
      [&](auto t) {
        using T = decltype(t);
        if (r.defined())
          cpu::add_layer_norm_forward<T>(s.data<T>(), out.data<T>(), data_or_null<T>(mean),
                                         data_or_null<T>(rstd), xin.data<T>(), rc.data<T>(),
                                         data_or_null<T>(w), data_or_null<T>(b), rows, C, eps);
        else
          cpu::layer_norm_forward<T>(out.data<T>(), data_or_null<T>(mean), data_or_null<T>(rstd),
                                     xin.data<T>(), data_or_null<T>(w), data_or_null<T>(b), rows,
                                     C, eps);
      },
      [&](auto t) {
        using T = decltype(t);
        if (r.defined())
          cuda::add_layer_norm_forward<T>(s.data<T>(), out.data<T>(), data_or_null<T>(mean),
                                          data_or_null<T>(rstd), xin.data<T>(), rc.data<T>(),
                                          data_or_null<T>(w), data_or_null<T>(b), rows, C, eps);
        else
          cuda::layer_norm_forward<T>(out.data<T>(), data_or_null<T>(mean), data_or_null<T>(rstd),
                                      xin.data<T>(), data_or_null<T>(w), data_or_null<T>(b), rows,
                                      C, eps);
      });
  AddNormed res;
  const Var x = norm_input(x_in, r, s, &res);
  const Tensor xc = r.defined() ? s : xin;
  res.out = record("layer_norm", out, {&x, &weight, &bias},
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
  return res;
}

// rms_norm of x, or of x + r with the add fused into the kernel.
AddNormed rms_norm_impl(const char* op, const Var& x_in, const Var& r, const Var& weight,
                        double eps) {
  check_norm_input(op, x_in, eps);
  check_residual(op, x_in, r);
  check_norm_param(op, x_in, weight, "weight");
  const Tensor xin = x_in.value().contiguous();
  const Tensor rc = r.defined() ? r.value().contiguous() : Tensor();
  const Tensor w = weight.defined() ? weight.value().contiguous() : Tensor();
  const int64_t rows = leading_rows(xin), C = xin.size(-1);
  const Tensor s = r.defined() ? Tensor::empty(xin.shape(), xin.dtype(), xin.device()) : Tensor();
  Tensor out = Tensor::empty(xin.shape(), xin.dtype(), xin.device());
  const bool grad = needs_grad({&x_in, &r, &weight});
  const Tensor rstd = grad ? Tensor::empty({rows}, xin.dtype(), xin.device()) : Tensor();
  dispatch(op, xin,
      [&](auto t) {
        using T = decltype(t);
        if (r.defined())
          cpu::add_rms_norm_forward<T>(s.data<T>(), out.data<T>(), data_or_null<T>(rstd),
                                       xin.data<T>(), rc.data<T>(), data_or_null<T>(w), rows, C,
                                       eps);
        else
          cpu::rms_norm_forward<T>(out.data<T>(), data_or_null<T>(rstd), xin.data<T>(),
                                   data_or_null<T>(w), rows, C, eps);
      },
      [&](auto t) {
        using T = decltype(t);
        if (r.defined())
          cuda::add_rms_norm_forward<T>(s.data<T>(), out.data<T>(), data_or_null<T>(rstd),
                                        xin.data<T>(), rc.data<T>(), data_or_null<T>(w), rows, C,
                                        eps);
        else
          cuda::rms_norm_forward<T>(out.data<T>(), data_or_null<T>(rstd), xin.data<T>(),
                                    data_or_null<T>(w), rows, C, eps);
      });
  AddNormed res;
  const Var x = norm_input(x_in, r, s, &res);
  const Tensor xc = r.defined() ? s : xin;
  res.out = record("rms_norm", out, {&x, &weight}, [x, weight, xc, w, rstd, rows, C](const Tensor& dout) {
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
  return res;
}

}  // namespace

Var layer_norm(const Var& x, const Var& weight, const Var& bias, double eps) {
  return layer_norm_impl("layer_norm", x, Var(), weight, bias, eps).out;
}

Var rms_norm(const Var& x, const Var& weight, double eps) {
  return rms_norm_impl("rms_norm", x, Var(), weight, eps).out;
}

AddNormed add_layer_norm(const Var& x, const Var& r, const Var& weight, const Var& bias, double eps) {
  GL_CHECK(r.defined(), "add_layer_norm: undefined residual r (use layer_norm)");
  return layer_norm_impl("add_layer_norm", x, r, weight, bias, eps);
}

AddNormed add_rms_norm(const Var& x, const Var& r, const Var& weight, double eps) {
  GL_CHECK(r.defined(), "add_rms_norm: undefined residual r (use rms_norm)");
  return rms_norm_impl("add_rms_norm", x, r, weight, eps);
}

}  // namespace gl
