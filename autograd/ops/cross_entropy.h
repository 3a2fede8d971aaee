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

// cross_entropy(linear(x, weight), targets) without a logits tensor: the
// language-model head fused with its loss (x [..., C], weight [V, C], no
// bias; targets x's shape without the last dim). The rows go through in
// chunks of chunk_rows (0: as many as make 2^26 logits, 256 MB of f32):
// each chunk's logits are made, turned into the chunk's losses and, when
// a gradient is needed, into d(sum of losses)/d logits, which two products
// turn into the chunk's share of dx and dweight; then the chunk's buffers
// are reused. So forward and backward together hold two chunks of logits,
// not two [N, V] tensors, and the backward only scales dx and dweight by
// dloss / n_valid. The chunk gradient is of the SUM (entries in [-1, 1]) so
// that bf16/f16 products (run.precision) round it without underflow; the
// mean's 1/n_valid comes after, in f32. Results equal the unfused ops up
// to rounding (the division moves); errors as cross_entropy's. targets may
// sit on the host when x is on a GPU: they are checked and counted there
// (no device synchronisation) and copied over.
Var linear_cross_entropy(const Var& x, const Var& weight, const Tensor& targets,
                         int64_t ignore_index = -100, int64_t chunk_rows = 0);

}  // namespace gl
