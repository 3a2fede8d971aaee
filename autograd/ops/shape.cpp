// Shape ops as autograd ops; see shape.h for the forward/backward rules.
// Invariant: every forward output is either a view of its input (reshape of
// a contiguous tensor, permute, transpose, slice, narrow, split, contiguous
// of a contiguous tensor) or a fresh contiguous tensor (reshape/contiguous
// of a strided tensor, concat). Gradients handed to accumulate_grad always
// have exactly the input's shape, dtype and device.
#include "autograd/ops/shape.h"

#include <string>

#include "autograd/ops/elementwise.h"
#include "autograd/tape.h"

namespace gl {

// Resolves a possibly negative dim of `x`; the error names the op and x.
static int64_t wrap_dim_for(const char* op, const Tensor& x, int64_t d, const std::string& who) {
  const int64_t n = x.dim();
  GL_CHECK(d >= -n && d < n, op, ": dim ", d, " out of range for ", who);
  return d < 0 ? d + n : d;
}

// --- reshape / contiguous ------------------------------------------------------------------

Var reshape(const Var& x, const Shape& shape) {
  // Tensor::reshape views when x is contiguous and copies otherwise.
  return record("reshape", x.value().reshape(shape), {&x},
                [x](const Tensor& dout) {
                  accumulate_grad_view(x, dout.reshape(x.shape()), dout);
                });
}

Var contiguous(const Var& x) {
  return record("contiguous", x.value().contiguous(), {&x},
                [x](const Tensor& dout) { accumulate_grad(x, dout); });
}

// --- permute / transpose -------------------------------------------------------------------

Var permute(const Var& x, const std::vector<int64_t>& dims) {
  GL_CHECK(int64_t(dims.size()) == x.dim(), "permute: ", dims.size(), " dims given for ",
           x.describe());
  // out dim i is x dim dims[i], so x dim dims[i] is out dim i: inverse[dims[i]] = i.
  std::vector<int64_t> inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    const int64_t d = wrap_dim_for("permute", x.value(), dims[i], x.describe());
    GL_CHECK(inverse[size_t(d)] < 0, "permute: dim ", d, " repeated in the permutation of ",
             x.describe());
    inverse[size_t(d)] = int64_t(i);
  }
  return record("permute", x.value().permute(dims), {&x}, [x, inverse](const Tensor& dout) {
    accumulate_grad(x, dout.permute(inverse).contiguous());
  });
}

Var transpose(const Var& x, int64_t d0, int64_t d1) {
  d0 = wrap_dim_for("transpose", x.value(), d0, x.describe());
  d1 = wrap_dim_for("transpose", x.value(), d1, x.describe());
  // A transposition is its own inverse.
  return record("transpose", x.value().transpose(d0, d1), {&x}, [x, d0, d1](const Tensor& dout) {
    accumulate_grad(x, dout.transpose(d0, d1).contiguous());
  });
}

// --- slice / narrow / split ----------------------------------------------------------------

// The adjoint of taking a slice: zeros everywhere except the sliced
// positions, which receive dout. Tensor::slice is deterministic in its
// arguments, so the same (dim, start, end, step) addresses the same
// elements that the forward view read.
//
// When x already holds a gradient (the second and third piece of a qkv
// split reaching the fused projection's output), dout is added into that
// slice of it in place: the same result as accumulate_grad of a zero-padded
// copy, without materialising and summing a full-size buffer per piece.
// x's grad buffer is its own (accumulate_grad's invariant), so the write
// touches nothing else.
static void slice_backward(const Var& x, const Tensor& dout, int64_t dim, int64_t start,
                           int64_t end, int64_t step) {
  if (!x.requires_grad()) return;
  const Tensor& grad = x.impl()->grad;
  if (grad.defined()) {
    GL_CHECK(grad.shape() == x.shape() && grad.dtype() == dout.dtype() &&
                 grad.device() == dout.device(),
             "internal: gradient ", grad.describe(), " does not match ", x.describe());
    Tensor part = grad.slice(dim, start, end, step);
    part.copy_(binary(part, dout, BinaryOp::ADD));
    return;
  }
  Tensor dx = Tensor::zeros(x.shape(), dout.dtype(), dout.device());
  dx.slice(dim, start, end, step).copy_(dout);
  accumulate_grad(x, dx);
}

static Var slice_op(const char* op, const Var& x, int64_t dim, int64_t start, int64_t end,
                    int64_t step) {
  return record(op, x.value().slice(dim, start, end, step), {&x},
                [x, dim, start, end, step](const Tensor& dout) {
                  slice_backward(x, dout, dim, start, end, step);
                });
}

Var slice(const Var& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  dim = wrap_dim_for("slice", x.value(), dim, x.describe());
  GL_CHECK(step > 0, "slice: step must be positive, got ", step, " for ", x.describe());
  return slice_op("slice", x, dim, start, end, step);
}

Var narrow(const Var& x, int64_t dim, int64_t start, int64_t length) {
  dim = wrap_dim_for("narrow", x.value(), dim, x.describe());
  const int64_t n = x.size(dim);
  GL_CHECK(start >= 0 && length >= 0 && start + length <= n, "narrow: [", start, ", ",
           start + length, ") out of range for dim ", dim, " of ", x.describe());
  return slice_op("narrow", x, dim, start, start + length, 1);
}

std::vector<Var> split(const Var& x, const std::vector<int64_t>& sizes, int64_t dim) {
  dim = wrap_dim_for("split", x.value(), dim, x.describe());
  int64_t total = 0;
  for (int64_t s : sizes) {
    GL_CHECK(s >= 0, "split: negative size ", s, " in ", shape_str(sizes), " for ", x.describe());
    total += s;
  }
  GL_CHECK(total == x.size(dim), "split: sizes ", shape_str(sizes), " sum to ", total,
           " but dim ", dim, " of ", x.describe(), " has ", x.size(dim));
  std::vector<Var> pieces;
  pieces.reserve(sizes.size());
  int64_t offset = 0;
  for (int64_t s : sizes) {
    pieces.push_back(slice_op("split", x, dim, offset, offset + s, 1));
    offset += s;
  }
  return pieces;
}

// --- concat --------------------------------------------------------------------------------

// Checks that xs can be concatenated along `dim` (already validated against
// xs[0]) and returns the output shape. names[i] labels xs[i] in errors.
static Shape concat_shape(const std::vector<Tensor>& xs, const std::vector<std::string>& names,
                          int64_t dim) {
  const Tensor& ref = xs[0];
  Shape shape = ref.shape();
  shape[size_t(dim)] = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& t = xs[i];
    GL_CHECK(t.defined(), "concat: ", names[i], " is undefined");
    GL_CHECK(t.dtype() == ref.dtype(), "concat: dtype mismatch, ", names[0], " vs ", names[i]);
    GL_CHECK(t.device() == ref.device(), "concat: device mismatch, ", names[0], " vs ",
             names[i]);
    GL_CHECK(t.dim() == ref.dim(), "concat: rank mismatch, ", names[0], " vs ", names[i]);
    for (int64_t d = 0; d < ref.dim(); ++d)
      GL_CHECK(d == dim || t.size(d) == ref.size(d), "concat along dim ", dim, ": ", names[0],
               " and ", names[i], " differ in dim ", d);
    shape[size_t(dim)] += t.size(dim);
  }
  return shape;
}

static Tensor concat_impl(const std::vector<Tensor>& xs, const std::vector<std::string>& names,
                          int64_t dim) {
  GL_CHECK(!xs.empty(), "concat: no tensors given");
  GL_CHECK(xs[0].defined(), "concat: ", names[0], " is undefined");
  dim = wrap_dim_for("concat", xs[0], dim, names[0]);
  Tensor out = Tensor::empty(concat_shape(xs, names, dim), xs[0].dtype(), xs[0].device());
  int64_t offset = 0;
  for (const Tensor& t : xs) {
    const int64_t n = t.size(dim);
    out.slice(dim, offset, offset + n).copy_(t);
    offset += n;
  }
  return out;
}

Tensor concat_tensor(const std::vector<Tensor>& xs, int64_t dim) {
  std::vector<std::string> names;
  for (size_t i = 0; i < xs.size(); ++i)
    names.push_back("xs[" + std::to_string(i) + "] " + xs[i].describe());
  return concat_impl(xs, names, dim);
}

Var concat(const std::vector<Var>& xs, int64_t dim) {
  std::vector<Tensor> values;
  std::vector<std::string> names;
  for (size_t i = 0; i < xs.size(); ++i) {
    GL_CHECK(xs[i].defined(), "concat: xs[", i, "] is an undefined Var");
    values.push_back(xs[i].value());
    names.push_back("xs[" + std::to_string(i) + "] (" + xs[i].describe() + ")");
  }
  Tensor out = concat_impl(values, names, dim);
  dim = xs[0].value().wrap_dim(dim);  // validated by concat_impl
  return record("concat", out, xs, [xs, dim](const Tensor& dout) {
    // d(out)/d(xs[i]) selects xs[i]'s block: its gradient is that block of dout.
    int64_t offset = 0;
    for (const Var& x : xs) {
      const int64_t n = x.size(dim);
      if (x.requires_grad()) accumulate_grad(x, dout.slice(dim, offset, offset + n).contiguous());
      offset += n;
    }
  });
}

}  // namespace gl
