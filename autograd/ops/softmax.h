// Softmax over the last dim, numerically stable (the row max is subtracted
// first), with its fused backward dx = y * (dy - sum(dy * y)) (kernels in
// cpu/softmax.cpp, cuda/softmax.cu).
// https://pytorch.org/docs/stable/generated/torch.nn.functional.softmax.html
#pragma once
#include "autograd/var.h"

namespace gl {

Var softmax(const Var& x);  // x [..., C] -> [..., C], each row sums to 1

}  // namespace gl
