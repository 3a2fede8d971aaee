// Reductions: sum and mean over any set of axes (keepdim or not), and the
// tensor-level sum_to used by broadcasting backward passes.
#pragma once
#include <vector>

#include "autograd/var.h"

namespace gl {

// --- tensor level
Tensor sum_tensor(const Tensor& x, std::vector<int64_t> dims, bool keepdim);
// Sums `g` down to `shape` (the inverse of broadcasting `shape` to g's shape).
Tensor sum_to(const Tensor& g, const Shape& shape);

// --- autograd ops; empty `dims` means all axes
Var sum(const Var& x, std::vector<int64_t> dims = {}, bool keepdim = false);
Var mean(const Var& x, std::vector<int64_t> dims = {}, bool keepdim = false);

}  // namespace gl
