// Embedding lookup as an op (torch.nn.functional.embedding). Kernels:
// cpu/embedding.{h,cpp}, cuda/embedding.{h,cu}.
#pragma once
#include "autograd/var.h"

namespace gl {

// weight: [V, C] floating; ids: I32 or I64 of any shape, on weight's device.
// Returns [ids.shape..., C] with row ids[...] of weight. An id outside
// [0, V) throws an Error naming the id, its flat position in ids and V.
// Backward: dweight[v] = sum of the output gradient rows whose id is v.
Var embedding(const Var& weight, const Tensor& ids);

}  // namespace gl
