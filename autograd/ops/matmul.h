// matmul and linear.
//   matmul(a, b, trans_a, trans_b) = op(a) . op(b) over the last two dims.
//   a: [..., M, K] ([..., K, M] if trans_a); b: [K, N] ([N, K] if trans_b),
//   or batched with exactly a's leading dims. Result [..., M, N].
//   linear(x, W, bias) = x . W^T + bias with W in torch's [out, in] layout.
#pragma once
#include "autograd/var.h"

namespace gl {

Tensor matmul_tensor(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);

Var matmul(const Var& a, const Var& b, bool trans_a = false, bool trans_b = false);
Var linear(const Var& x, const Var& weight, const Var& bias = Var());

}  // namespace gl
