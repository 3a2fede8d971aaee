// Causal scaled-dot-product attention as one fused op (flash-style memory:
// the tape keeps q, k, v, the output and the per-row log-sum-exp, never a
// Tq x Tk matrix). Kernels and the backward derivation: cpu/attention.{h,cpp}.
// Tk >= Tq supported (KV cache).
#pragma once
#include "autograd/var.h"

namespace gl {

// q: [B, NH, Tq, HS]; k, v: [B, NH, Tk, HS] with Tk >= Tq; same B, NH, HS,
// dtype and device. The queries are the LAST Tq positions of the Tk-long
// sequence (aligned to the end, as with a KV cache holding Tk - Tq earlier
// positions): query row i sits at position p = Tk - Tq + i and attends to
// keys s <= p. Returns [B, NH, Tq, HS]:
//   out[b, h, i] = sum_{s <= p} softmax_s(scale * q_i . k_s) v_s.
// Tq == Tk is torch's scaled_dot_product_attention(q, k, v, is_causal=True,
// scale=scale); for Tq < Tk, attention(q[:, :, -m:], k, v) equals the last
// m rows of the full causal attention. Gradients flow to q, k and v.
Var attention(const Var& q, const Var& k, const Var& v, double scale);

}  // namespace gl
