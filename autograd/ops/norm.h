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

}  // namespace gl
