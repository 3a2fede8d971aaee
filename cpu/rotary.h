// Rotary position embedding (RoPE) kernels, GPT-NeoX "rotate half"
// convention, applied to the first rotary_dim dims of every head.
//
// Shapes: x, out: [BH, T, HS] contiguous (BH = B * NH, T = seq_len).
// With half = rotary_dim / 2, for i < half and the row's position
// pos = position_offset + t:
//   inv_freq_i = 1 / base^(2i / rotary_dim),  theta = pos * inv_freq_i
//   out_i        = x_i cos(theta) - x_{i+half} sin(theta)
//   out_{i+half} = x_{i+half} cos(theta) + x_i sin(theta)
//   out_d        = x_d for d >= rotary_dim (pass-through)
// Each pair (i, i+half) is rotated by theta, so the backward is the same
// map with theta -> -theta (the inverse rotation, R^T = R^-1).
// Angles, cos and sin are computed in T: for f32 exactly the way HF's
// GPTNeoXRotaryEmbedding forms them (f32 inv_freq and angle), so long
// contexts rotate by the same rounded angles as the reference model.
// Reference: Su et al., RoFormer (arXiv 2104.09864); HF transformers
//   models/gpt_neox/modeling_gpt_neox.py (rotate_half, apply_rotary_pos_emb).
// Conventions: outputs, inputs, sizes; dx is overwritten.
#pragma once
#include <cstdint>

namespace gl::cpu {

// rotary_forward: out = R(theta) x.  rotary_backward: dx = R(-theta) dout.
template <class T>
void rotary_forward(T* out, const T* x, int64_t BH, int64_t seq_len, int64_t HS,
                    int64_t rotary_dim, double base, int64_t position_offset);
template <class T>
void rotary_backward(T* dx, const T* dout, int64_t BH, int64_t seq_len, int64_t HS,
                     int64_t rotary_dim, double base, int64_t position_offset);

}  // namespace gl::cpu
