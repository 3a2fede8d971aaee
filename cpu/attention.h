// Causal scaled-dot-product attention kernels (CPU reference), fused and
// flash-style: the forward keeps only the output and the per-row
// log-sum-exp, never the Tq x Tk probability matrix; the backward
// recomputes each probability from them.
//
// Shapes (BH = B * NH heads, all buffers contiguous):
//   q, out, dq, dout: [BH, Tq, HS]   k, v, dk, dv: [BH, Tk, HS]
//   lse, delta: [BH, Tq]             Tk >= Tq >= 0
// Queries are aligned to the END of the keys (a KV cache: the keys hold the
// Tk - Tq earlier positions, then the Tq new ones): query row t sits at
// absolute position t + off, off = Tk - Tq, and sees keys s <= t + off.
// Tq == Tk is plain causal self-attention.
// Maths: S_ts = scale * q_t . k_s for s <= t + off, P_t = softmax_s(S_t),
//   out_t = sum_s P_ts v_s,  lse_t = log sum_s exp(S_ts).
// Reference: Dao et al., FlashAttention-2 (arXiv 2307.08691), Algorithms 1-2;
//   torch.nn.functional.scaled_dot_product_attention(is_causal=True) for
//   Tq == Tk; for Tq < Tk the mask is torch.ones(Tq, Tk).tril(Tk - Tq)
//   (bottom-right aligned, as flash-attn >= 2.1 does).
// Conventions: outputs, inputs, sizes; activation grads (dq, dk, dv) are
// overwritten, not accumulated. delta is backward scratch (written).
#pragma once
#include <cstdint>

namespace gl::cpu {

template <class T>
void attention_forward(T* out, T* lse, const T* q, const T* k, const T* v, int64_t BH,
                       int64_t Tq, int64_t Tk, int64_t HS, double scale);

template <class T>
void attention_backward(T* dq, T* dk, T* dv, T* delta, const T* dout, const T* q, const T* k,
                        const T* v, const T* out, const T* lse, int64_t BH, int64_t Tq,
                        int64_t Tk, int64_t HS, double scale);

}  // namespace gl::cpu
