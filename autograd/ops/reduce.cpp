#include "autograd/ops/reduce.h"

#include <algorithm>

#include "autograd/dispatch.h"
#include "autograd/ops/elementwise.h"
#include "autograd/tape.h"
#include "cpu/reduce.h"
#include "cuda/reduce.h"

namespace gl {

// Normalises dims (negative, empty = all), sorted and unique.
static std::vector<int64_t> resolve_dims(const Tensor& x, std::vector<int64_t> dims) {
  if (dims.empty())
    for (int64_t d = 0; d < x.dim(); ++d) dims.push_back(d);
  for (int64_t& d : dims) d = x.wrap_dim(d);
  std::sort(dims.begin(), dims.end());
  GL_CHECK(std::adjacent_find(dims.begin(), dims.end()) == dims.end(),
           "sum: repeated dim for ", x.describe());
  return dims;
}

static Shape reduced_shape(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  Shape out;
  for (int64_t d = 0; d < x.dim(); ++d) {
    const bool reduced = std::binary_search(dims.begin(), dims.end(), d);
    if (!reduced) out.push_back(x.size(d));
    else if (keepdim) out.push_back(1);
  }
  return out;
}

Tensor sum_tensor(const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
  dims = resolve_dims(x, std::move(dims));
  // Leading axes of a contiguous CPU tensor (bias gradients, sum_to over
  // broadcast batch dims): sum columns in place instead of transposing the
  // whole tensor first. Same order of additions, same result.
  const bool leading = !dims.empty() && dims.back() == int64_t(dims.size()) - 1 &&
                       int64_t(dims.size()) < x.dim();
  if (leading && x.device().is_cpu() && x.is_contiguous()) {
    int64_t rows = 1;
    for (int64_t d : dims) rows *= x.size(d);
    const int64_t cols = rows == 0 ? 0 : x.numel() / rows;
    Tensor out = Tensor::empty(reduced_shape(x, dims, keepdim), x.dtype(), x.device());
    if (rows == 0) {
      out.zero_();
      return out;
    }
    dispatch("sum", x,
        [&](auto t) {
          using T = decltype(t);
          cpu::sum_cols<T>(out.data<T>(), x.data<T>(), rows, cols);
        },
        [&](auto) {});
    return out;
  }
  // Kept axes first, reduced axes last: the reduction becomes a row sum.
  std::vector<int64_t> perm;
  int64_t cols = 1;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (!std::binary_search(dims.begin(), dims.end(), d)) perm.push_back(d);
  for (int64_t d : dims) {
    perm.push_back(d);
    cols *= x.size(d);
  }
  const Tensor xp = x.permute(perm).contiguous();
  const int64_t rows = cols == 0 ? shape_numel(reduced_shape(x, dims, false)) : x.numel() / cols;
  Tensor out = Tensor::empty(reduced_shape(x, dims, keepdim), x.dtype(), x.device());
  dispatch("sum", x,
      [&](auto t) {
        using T = decltype(t);
        cpu::sum_rows<T>(out.data<T>(), xp.data<T>(), rows, cols);
      },
      [&](auto t) {
        using T = decltype(t);
        cuda::sum_rows<T>(out.data<T>(), xp.data<T>(), rows, cols);
      });
  return out;
}

Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  GL_CHECK(shape.size() <= g.shape().size(), "sum_to: cannot reduce ", g.describe(), " to ",
           shape_str(shape));
  const size_t lead = g.shape().size() - shape.size();
  std::vector<int64_t> dims;
  for (size_t i = 0; i < g.shape().size(); ++i) {
    if (i < lead) {
      dims.push_back(int64_t(i));
    } else {
      GL_CHECK(shape[i - lead] == g.shape()[i] || shape[i - lead] == 1, "sum_to: cannot reduce ",
               g.describe(), " to ", shape_str(shape));
      if (shape[i - lead] == 1 && g.shape()[i] != 1) dims.push_back(int64_t(i));
    }
  }
  if (dims.empty()) return g.reshape(shape);
  return sum_tensor(g, dims, true).reshape(shape);
}

// d(sum)/dx: the output gradient broadcast back over the reduced axes.
static Tensor expand_back(const Tensor& dout, const Tensor& x, const std::vector<int64_t>& dims) {
  return dout.reshape(reduced_shape(x, dims, true)).expand(x.shape()).contiguous();
}

Var sum(const Var& x, std::vector<int64_t> dims, bool keepdim) {
  dims = resolve_dims(x.value(), std::move(dims));
  return record("sum", sum_tensor(x.value(), dims, keepdim), {&x},
                [x, dims](const Tensor& dout) {
                  accumulate_grad(x, expand_back(dout, x.value(), dims));
                });
}

Var mean(const Var& x, std::vector<int64_t> dims, bool keepdim) {
  dims = resolve_dims(x.value(), std::move(dims));
  int64_t count = 1;
  for (int64_t d : dims) count *= x.size(d);
  GL_CHECK(count > 0, "mean over an empty set of elements: ", x.describe());
  const double inv = 1.0 / double(count);
  return record("mean", affine(sum_tensor(x.value(), dims, keepdim), inv, 0), {&x},
                [x, dims, inv](const Tensor& dout) {
                  accumulate_grad(x, affine(expand_back(dout, x.value(), dims), inv, 0));
                });
}

}  // namespace gl
