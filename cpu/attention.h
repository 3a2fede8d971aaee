// Causal scaled-dot-product attention kernels (CPU reference), fused and
// flash-style: the forward keeps only the output and the per-row
// log-sum-exp, never the T x T probability matrix; the backward recomputes
// each probability from them.
//
// Shapes (BH = B * NH heads, T = seq_len, all buffers contiguous):
//   q, k, v, out, dq, dk, dv, dout: [BH, T, HS]    lse, delta: [BH, T]
// Maths: S_ts = scale * q_t . k_s for s <= t (causal), P_t = softmax_s(S_t),
//   out_t = sum_{s<=t} P_ts v_s,  lse_t = log sum_{s<=t} exp(S_ts).
// Reference: Dao et al., FlashAttention-2 (arXiv 2307.08691), Algorithms 1-2;
//   torch.nn.functional.scaled_dot_product_attention(is_causal=True).
// Conventions: outputs, inputs, sizes; activation grads (dq, dk, dv) are
// overwritten, not accumulated. delta is backward scratch (written).
#pragma once
#include <cstdint>

namespace gl::cpu {

template <class T>
void attention_forward(T* out, T* lse, const T* q, const T* k, const T* v, int64_t BH,
                       int64_t seq_len, int64_t HS, double scale);

template <class T>
void attention_backward(T* dq, T* dk, T* dv, T* delta, const T* dout, const T* q, const T* k,
                        const T* v, const T* out, const T* lse, int64_t BH, int64_t seq_len,
                        int64_t HS, double scale);

}  // namespace gl::cpu
