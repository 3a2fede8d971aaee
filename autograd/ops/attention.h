// Causal scaled-dot-product attention as one fused op (flash-style memory:
// the tape keeps q, k, v, the output and the per-row log-sum-exp, never a
// T x T matrix). Kernels and the backward derivation: cpu/attention.{h,cpp}.
#pragma once
#include "autograd/var.h"

namespace gl {

// q, k, v: [B, NH, T, HS], same shape, dtype and device. Returns
// out[b, h, t] = sum_{s<=t} softmax_s(scale * q_t . k_s) v_s, [B, NH, T, HS]
// (torch's scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)).
Var attention(const Var& q, const Var& k, const Var& v, double scale);

}  // namespace gl
