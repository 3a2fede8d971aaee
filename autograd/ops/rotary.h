// Rotary position embedding (GPT-NeoX rotate-half convention) as an op.
// Maths, conventions and the HF note: cpu/rotary.h.
#pragma once
#include "autograd/var.h"

namespace gl {

// x: [B, NH, T, HS]. Rotates the first rotary_dim dims of every head (even,
// 0 <= rotary_dim <= HS; the rest pass through); row t sits at position
// position_offset + t (a KV-cache continuation passes its cache length).
Var rotary(const Var& x, int64_t rotary_dim, double base = 10000.0, int64_t position_offset = 0);

// The attention inputs of a GPT-NeoX layer from its fused projection, in
// one pass each way: qkv [B, T, NH * 3 * HS] in Hugging Face's per-head
// [q | k | v] layout gives q, k, v [B, NH, T, HS], contiguous, with q and k
// rotated as rotary() does. The same bits as reshape, split, permute and
// rotary (the same kernel, cpu/rotary.h rotary_strided), without the
// gathers and copies between them; the backward writes the three
// gradients straight into qkv's.
struct QkvHeads {
  Var q, k, v;
};
QkvHeads qkv_heads(const Var& qkv, int64_t num_heads, int64_t rotary_dim, double base = 10000.0,
                   int64_t position_offset = 0);

}  // namespace gl
