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

// The same rotation between strided row layouts, for the fused attention
// input (autograd/ops/rotary.h qkv_heads): row (b, h, t), b < B, h < NH,
// t < seq_len, starts at element b * sb + h * sh + t * st of its tensor,
// and its HS elements are contiguous. inverse: R(-theta) (the backward);
// accumulate: out += instead of out =. rotary_dim 0 is a strided copy.
// rotary_forward/backward are this with contiguous rows, so both give the
// same bits.
struct RotaryRows {
  int64_t sb = 0, sh = 0, st = 0;
};
template <class T>
void rotary_strided(T* out, RotaryRows out_rows, const T* x, RotaryRows x_rows, int64_t B, int64_t NH,
                    int64_t seq_len, int64_t HS, int64_t rotary_dim, double base, int64_t position_offset,
                    bool inverse, bool accumulate);

}  // namespace gl::cpu
