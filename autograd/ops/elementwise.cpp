#include "autograd/ops/elementwise.h"

#include "autograd/dispatch.h"
#include "autograd/ops/reduce.h"
#include "autograd/tape.h"
#include "cuda/elementwise.h"

namespace gl {

static const char* op_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::ADD: return "add";
    case BinaryOp::SUB: return "sub";
    case BinaryOp::MUL: return "mul";
    case BinaryOp::DIV: return "div";
  }
  return "binary";
}

void check_same(const char* op, const Tensor& ref, const Tensor& other, const char* other_name) {
  GL_CHECK(ref.defined() && other.defined(), op, ": undefined input");
  GL_CHECK(ref.dtype() == other.dtype(), op, ": dtype mismatch, ", ref.describe(), " vs ",
           other_name, " ", other.describe());
  GL_CHECK(ref.device() == other.device(), op, ": device mismatch, ", ref.describe(), " vs ",
           other_name, " ", other.describe());
}

Tensor binary(const Tensor& a, const Tensor& b, BinaryOp op) {
  const char* name = op_name(op);
  check_same(name, a, b, "b");
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  GL_CHECK(shape.size() <= size_t(kMaxBroadcastDims), name, ": at most ", kMaxBroadcastDims,
           " dims, got ", a.describe(), " and ", b.describe());
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  // Broadcast views carry zero strides; the kernel reads them directly.
  const Tensor ea = a.expand(shape), eb = b.expand(shape);
  BroadcastIndex idx;
  idx.ndim = int(shape.size());
  for (int d = 0; d < idx.ndim; ++d) {
    idx.shape[d] = shape[size_t(d)];
    idx.a_strides[d] = ea.strides()[size_t(d)];
    idx.b_strides[d] = eb.strides()[size_t(d)];
  }
  idx.contiguous = ea.is_contiguous() && eb.is_contiguous();
  dispatch(name, a,
      [&](auto t) {
        using T = decltype(t);
        cpu::binary_forward<T>(out.data<T>(), ea.data<T>(), eb.data<T>(), op, idx, out.numel());
      },
      [&](auto t) {
        using T = decltype(t);
        cuda::binary_forward<T>(out.data<T>(), ea.data<T>(), eb.data<T>(), op, idx, out.numel());
      });
  return out;
}

Tensor affine(const Tensor& x, double alpha, double beta) {
  const Tensor xc = x.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch("affine", x,
      [&](auto t) {
        using T = decltype(t);
        cpu::affine_forward<T>(out.data<T>(), xc.data<T>(), alpha, beta, out.numel());
      },
      [&](auto t) {
        using T = decltype(t);
        cuda::affine_forward<T>(out.data<T>(), xc.data<T>(), alpha, beta, out.numel());
      });
  return out;
}

void add_(Tensor& dst, const Tensor& src) {
  check_same("add_", dst, src, "src");
  GL_CHECK(dst.shape() == src.shape(), "add_: ", dst.describe(), " += ", src.describe());
  GL_CHECK(dst.is_contiguous(), "add_: destination ", dst.describe(), " is not contiguous");
  const Tensor s = src.contiguous();
  dispatch("add_", dst,
      [&](auto t) {
        using T = decltype(t);
        cpu::accumulate<T>(dst.data<T>(), s.data<T>(), dst.numel());
      },
      [&](auto t) {
        using T = decltype(t);
        cuda::accumulate<T>(dst.data<T>(), s.data<T>(), dst.numel());
      });
}

// d(a op b): each input's gradient, summed back to its own (pre-broadcast) shape.
Var add(const Var& a, const Var& b) {
  return record("add", binary(a.value(), b.value(), BinaryOp::ADD), {&a, &b},
                [a, b](const Tensor& dout) {
                  accumulate_grad(a, sum_to(dout, a.shape()));
                  accumulate_grad(b, sum_to(dout, b.shape()));
                });
}

Var sub(const Var& a, const Var& b) {
  return record("sub", binary(a.value(), b.value(), BinaryOp::SUB), {&a, &b},
                [a, b](const Tensor& dout) {
                  accumulate_grad(a, sum_to(dout, a.shape()));
                  if (b.requires_grad()) accumulate_grad(b, sum_to(affine(dout, -1, 0), b.shape()));
                });
}

Var mul(const Var& a, const Var& b) {
  return record("mul", binary(a.value(), b.value(), BinaryOp::MUL), {&a, &b},
                [a, b](const Tensor& dout) {
                  if (a.requires_grad())
                    accumulate_grad(a, sum_to(binary(dout, b.value(), BinaryOp::MUL), a.shape()));
                  if (b.requires_grad())
                    accumulate_grad(b, sum_to(binary(dout, a.value(), BinaryOp::MUL), b.shape()));
                });
}

Var div(const Var& a, const Var& b) {
  Tensor out = binary(a.value(), b.value(), BinaryOp::DIV);
  return record("div", out, {&a, &b}, [a, b, out](const Tensor& dout) {
    // d(a/b)/da = 1/b;  d(a/b)/db = -a/b^2 = -out/b.
    const Tensor da = binary(dout, b.value(), BinaryOp::DIV);
    if (a.requires_grad()) accumulate_grad(a, sum_to(da, a.shape()));
    if (b.requires_grad())
      accumulate_grad(b, sum_to(affine(binary(da, out, BinaryOp::MUL), -1, 0), b.shape()));
  });
}

Var scale(const Var& x, double alpha) {
  return record("scale", affine(x.value(), alpha, 0), {&x},
                [x, alpha](const Tensor& dout) { accumulate_grad(x, affine(dout, alpha, 0)); });
}

Var add_scalar(const Var& x, double beta) {
  return record("add_scalar", affine(x.value(), 1, beta), {&x},
                [x](const Tensor& dout) { accumulate_grad(x, dout); });
}

Var neg(const Var& x) { return scale(x, -1.0); }

}  // namespace gl
