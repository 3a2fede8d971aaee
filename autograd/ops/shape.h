// Shape ops: reshape, permute, transpose, slice, narrow, concat, split,
// contiguous. Forward passes are Tensor views where the layout allows
// (core/tensor.h) and copy_ into slices otherwise; they launch no kernels of
// their own. Reference: torch.reshape / permute / narrow / cat / split.
//
// Backward rules (each op is linear, so the gradient is the adjoint map):
//   reshape, contiguous       -> dout reshaped back / passed through
//   permute, transpose        -> dout under the inverse permutation (made contiguous)
//   slice, narrow, split      -> zeros of x's shape with dout written into the same slice
//   concat                    -> each input gets its slice of dout
#pragma once
#include <vector>

#include "autograd/var.h"

namespace gl {

// --- tensor level (no autograd)
// Concatenates along `dim`: same dtype, device and rank; equal sizes
// outside `dim`. Errors name the mismatched tensors (xs[i]).
Tensor concat_tensor(const std::vector<Tensor>& xs, int64_t dim);

// --- autograd ops
Var reshape(const Var& x, const Shape& shape);  // one dim may be -1; view when x is contiguous
Var permute(const Var& x, const std::vector<int64_t>& dims);
Var transpose(const Var& x, int64_t d0, int64_t d1);
// Python slicing x[start:end:step] along `dim` (negative indices count from
// the end, out-of-range bounds clamp); step > 0.
Var slice(const Var& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
// x[start:start+length] along `dim`; the range must lie inside x.
Var narrow(const Var& x, int64_t dim, int64_t start, int64_t length);
Var concat(const std::vector<Var>& xs, int64_t dim);
// Pieces of the given sizes along `dim` (sizes must sum to x.size(dim));
// each piece is its own slice op, so any subset of them may be used.
std::vector<Var> split(const Var& x, const std::vector<int64_t>& sizes, int64_t dim);
Var contiguous(const Var& x);  // identity gradient

}  // namespace gl
