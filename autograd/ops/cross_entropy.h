// Fused log-softmax + NLL loss (torch.nn.functional.cross_entropy with
// reduction="mean"). Kernels and the backward derivation:
// cpu/cross_entropy.{h,cpp}, cuda/cross_entropy.{h,cu}.
#pragma once
#include "autograd/var.h"

namespace gl {

// logits: [..., V] floating; targets: I32 or I64 of shape logits.shape[:-1],
// on logits' device. Returns the scalar (shape {}) mean over the tokens
// whose target != ignore_index of -log softmax(logits)[target]; NaN when
// every token is ignored (as torch). A target outside [0, V) other than
// ignore_index throws an Error naming it and its flat position.
Var cross_entropy(const Var& logits, const Tensor& targets, int64_t ignore_index = -100);

}  // namespace gl
