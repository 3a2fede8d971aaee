// Knowledge distillation as a QAT objective (issue 5 item 4, spec.md 5.2):
// the temperature-scaled forward KL from a frozen teacher's logits to the
// student's, fused with its gradient. Kernels and the backward derivation:
// cpu/distill.{h,cpp}, cuda/distill.{h,cu}.
#pragma once
#include "autograd/var.h"

namespace gl {

// student_logits: [..., V] floating (typically [B, T, V]); teacher_logits:
// a plain tensor (the teacher is frozen: no gradient flows to it) of the
// same shape, dtype and device; temperature tau > 0; mask: optional, shape
// student_logits.shape[:-1], any dtype, values 0 (token ignored) or 1.
// Returns the scalar (shape {})
//   tau^2 * (1 / N) * sum_{counted tokens} KL(softmax(z_T / tau) || softmax(z_S / tau))
// with N the number of counted tokens (all, without a mask): Hinton et
// al.'s tau^2 keeps the gradient's size independent of tau; at tau = 1 it
// is LLM-QAT's kl_div(log_softmax(S), softmax(T)) with a per-token mean
// instead of "batchmean". NaN when the mask excludes every token (as
// cross_entropy). Gradient: tau * (softmax(z_S/tau) - softmax(z_T/tau)) / N.
Var distill_kl(const Var& student_logits, const Tensor& teacher_logits, double temperature,
               const Tensor& mask = {});

}  // namespace gl
