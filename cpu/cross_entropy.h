// Fused log-softmax + negative log-likelihood (cross-entropy) kernels.
//
// Shapes: logits, dlogits [N, V] contiguous (N = tokens, V = classes);
// targets [N] (I = int32_t or int64_t); losses, lse [N]; dloss [1].
// Forward, per row n with target y = targets[n]:
//   lse[n] = log sum_v exp(logits[n, v])   (max-subtracted)
//   losses[n] = lse[n] - logits[n, y]
// (both 0 where y == ignore_index: those rows are not read)
// and status[0] = min(status[0], first row whose target is neither
// ignore_index nor in [0, V)) (caller sets N; rows with a bad target are
// never read at the target), status[1] += number of rows not ignored
// (caller sets 0). On CUDA, status points to device memory.
// Backward of loss = (sum_n losses[n]) * inv_n_valid (the mean):
//   d loss / d logits[n, v] = (softmax(logits[n])_v - [v == y]) * dloss * inv_n_valid
// since d lse / d logits = softmax and d logits[n, y] / d logits[n, v] = [v == y];
// ignored rows get 0. softmax is recomputed as exp(logits - lse), so the
// forward keeps no logits-sized buffer.
// With `grad` (CPU only; nullptr: none), the forward also writes that
// gradient for dloss = 1, grad[n, v] = (softmax_v - [v == y]) * inv_n_valid,
// from the row while it is in cache: the training path then needs no
// backward pass over the logits (autograd/ops/cross_entropy.cpp).
// Reference: torch.nn.functional.cross_entropy(reduction="mean", ignore_index).
// Conventions: outputs, inputs, sizes; dlogits is overwritten. On the CPU
// dlogits may alias logits.
#pragma once
#include <cstdint>

namespace gl::cpu {

template <class T, class I>
void cross_entropy_forward(T* losses, T* lse, int64_t* status, const T* logits, const I* targets,
                           int64_t N, int64_t V, int64_t ignore_index, T* grad = nullptr);
// dloss: the one-element gradient of the mean loss (device memory on CUDA).
template <class T, class I>
void cross_entropy_backward(T* dlogits, const T* dloss, const T* logits, const T* lse,
                            const I* targets, int64_t N, int64_t V, int64_t ignore_index,
                            double inv_n_valid);

}  // namespace gl::cpu
