// Activation ops: GELU in its exact (erf) and GPT-2 tanh forms, with the
// analytic derivative of each (kernels in cpu/activation.cpp,
// cuda/activation.cu). https://pytorch.org/docs/stable/generated/torch.nn.GELU.html
#pragma once
#include "autograd/var.h"
#include "cpu/activation.h"

namespace gl {

// ERF: x * 0.5 * (1 + erf(x / sqrt(2)))        (HF "gelu")
// TANH: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))  (GPT-2, HF "gelu_new")
Var gelu(const Var& x, GeluKind kind = GeluKind::ERF);

// gelu(y + bias) with bias [C] over y's last dim C, as one op: a linear
// layer's bias add fused into its activation (cpu/activation.h: y + bias is
// recomputed in the backward rather than stored, and dbias is summed in the
// kernel that computes dy). Same values as gelu(add(y, bias)).
Var bias_gelu(const Var& y, const Var& bias, GeluKind kind = GeluKind::ERF);

}  // namespace gl
