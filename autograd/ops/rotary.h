// Rotary position embedding (GPT-NeoX rotate-half convention) as an op.
// Maths, conventions and the HF note: cpu/rotary.h.
#pragma once
#include "autograd/var.h"

namespace gl {

// x: [B, NH, T, HS]. Rotates the first rotary_dim dims of every head (even,
// 0 <= rotary_dim <= HS; the rest pass through); row t sits at position
// position_offset + t (a KV-cache continuation passes its cache length).
Var rotary(const Var& x, int64_t rotary_dim, double base = 10000.0, int64_t position_offset = 0);

}  // namespace gl
