// Normalisation ops over the last dim C of x [..., C]: LayerNorm and RMSNorm,
// each with an explicit fused backward (kernels in cpu/norm.cpp, cuda/norm.cu).
//   layer_norm: torch.nn.functional.layer_norm(x, [C], weight, bias, eps)
//               https://pytorch.org/docs/stable/generated/torch.nn.LayerNorm.html
//   rms_norm:   x / sqrt(mean(x^2) + eps) * weight (Zhang & Sennrich 2019,
//               https://arxiv.org/abs/1910.07467)
// weight and bias are [C] or an undefined Var() (no scale / no shift).
#pragma once
#include "autograd/var.h"

namespace gl {

Var layer_norm(const Var& x, const Var& weight, const Var& bias, double eps = 1e-5);
Var rms_norm(const Var& x, const Var& weight, double eps = 1e-6);

// The residual add fused into the norm that reads its result (a
// transformer's x + block(x) followed by the next LayerNorm): sum = x + r
// and out = layer_norm(sum, ...) / rms_norm(sum, ...) from one kernel, one
// pass over the stream instead of an add kernel and a re-read. Same values
// and gradients as add() then the norm; r must have x's shape.
struct AddNormed {
  Var sum, out;
};
AddNormed add_layer_norm(const Var& x, const Var& r, const Var& weight, const Var& bias,
                         double eps = 1e-5);
AddNormed add_rms_norm(const Var& x, const Var& r, const Var& weight, double eps = 1e-6);

}  // namespace gl
